#!/usr/bin/env python3
"""A tiny raw-frame geokv client for the integration tests (proto/proto.h, little-endian).

It exists so the daemon can be tested on its own, and so tests can send what the real client
never would: malformed headers, oversize frames, bad HELLOs, undecodable ops.

usage: rawclient.py HOST:PORT COMMAND [ARGS...]
  status                         print "revision=N applied=N commit=N first=N last=N"
  bucket-add NAME [MAXVAL] [HISTORY] [MAXAGE_MS]
  put|create BUCKET KEY VALUE    print "rev=N" or "error=NAME(code) msg"
  update BUCKET KEY VALUE REV
  get BUCKET KEY [REV]           print the value, or the error
  del|purge BUCKET KEY [REV]
  keys BUCKET [PREFIX]           one key per line
  batch BUCKET K=V...            one BATCH of puts
  verify BUCKET ACKFILE          GET every key in ACKFILE; "present=N missing=M"
  load BUCKET N VALSIZE ACKFILE  pipelined puts k000000..; each acknowledged key is appended
                                 to ACKFILE as soon as its response arrives (kill -9 tests)
  silent [SECONDS]               connect, send nothing: "closed after=MS" when the server cuts
                                 the connection within SECONDS (default 30), else "open"
  idle [SECONDS]                 HELLO, then nothing: "closed after=MS" or "open"
  noread BUCKET                  put a 1 MiB value, then send GETs of it without reading a
                                 reply: "closed after=MS" (counted from when the server stopped
                                 taking requests) or "open"
  busy SECONDS INTERVAL_MS       HELLO, then a STATUS every INTERVAL_MS for SECONDS:
                                 "open answered=N" or "closed after=MS answered=N"
  raw-badflags | raw-toobig N | raw-garbage | raw-nohello | raw-badcluster | raw-badversion |
  raw-badop | raw-truncated-op | raw-badbatch | raw-unknown-type | raw-hello
                                 send one bad thing; print what came back and whether the
                                 server closed the connection ("closed" / "open")
  raw-dup-hello | raw-badrole    the same for a second HELLO on an open session, and for a
                                 HELLO with role 99 (the only frame sent)
  flood MODE N LEN SEND SECONDS  N connections, each announcing a LEN-byte frame and sending
                                 SEND bytes of it; MODE: req (a REQ before HELLO), hello (a
                                 HELLO header of LEN bytes), session (HELLO, then a REQ). Prints
                                 "flood conns=N open=O closed=C errors=NAME:K,..." and the first
                                 error message, then "holding" and keeps the connections open
                                 for SECONDS (tests read the daemon's memory meanwhile)
  dribble INTERVAL_MS [SECONDS]  HELLO, then a PUT frame one byte every INTERVAL_MS: "closed
                                 after=MS sent=N" (from the first byte) or "open sent=N"
  slowput BUCKET KEY SIZE CHUNKS INTERVAL_MS
                                 a PUT of SIZE bytes sent in CHUNKS pieces INTERVAL_MS apart
  bigput BUCKET KEY SIZE         PUT a SIZE-byte value, GET it back: "rev=N verified=SIZE"
GEOKV_CLUSTER and GEOKV_TOKEN (environment) go into the HELLO.
Exit status: 0 when the command got a RESP, 1 on an ERROR reply, 2 on usage or I/O errors.
"""
import os
import socket
import struct
import sys
import time

T_HELLO, T_HELLO_OK, T_ERROR, T_PING, T_PONG, T_REQ, T_RESP = 1, 2, 3, 4, 5, 16, 17
OP = dict(bucket_add=1, bucket_del=2, put=3, create=4, update=5, delete=6, purge=7, batch=8,
          get=32, keys=33, history=34, bucket_info=35, bucket_list=36, status=37)
ERRNAMES = {
    -30100: "KV_ENOTFOUND", -30101: "KV_EEXIST", -30102: "KV_EREVISION", -30103: "KV_EBADKEY",
    -30104: "KV_EBADBUCKET", -30105: "KV_ENOBUCKET", -30106: "KV_EBUCKETEXISTS",
    -30107: "KV_ETOOBIG", -30108: "KV_EFULL", -30109: "KV_ECORRUPT", -30110: "KV_EBADCONFIG",
    -30111: "KV_EREADONLY", -30112: "KV_EINTERNAL", -30113: "KV_EBATCH",
    -30201: "PROTO_EBADMSG", -30202: "PROTO_ETOOBIG", -30203: "PROTO_EVERSION", -30204: "PROTO_EAUTH",
    -30205: "PROTO_ECLUSTER", -30207: "PROTO_EBUSY", -30208: "PROTO_EINTERNAL",
    -30211: "PROTO_EBADTYPE", -30212: "PROTO_ESHUTDOWN",
}


def b8(s):
    return struct.pack("<B", len(s)) + s


def b16(s):
    return struct.pack("<H", len(s)) + s


def b32(s):
    return struct.pack("<I", len(s)) + s


def frame(ftype, rid, payload, flags=0):
    return struct.pack("<IHHQ", len(payload), ftype, flags, rid) + payload


def enc_op(op, bucket=b"", key=b"", value=b"", rev=0, cfg=None, after=b"", limit=0):
    code = OP[op]
    out = struct.pack("<B", code)
    if op in ("bucket_list",):
        return out + b16(after) + struct.pack("<I", limit)
    if op == "status":
        return out
    out += b8(bucket)
    if op == "bucket_add":
        hist, maxval, maxage = cfg or (1, 0, 0)
        return out + struct.pack("<IIQ", hist, maxval, maxage) + b8(b"")
    if op in ("bucket_del", "bucket_info"):
        return out
    out += b16(key)
    if op in ("put", "create", "update"):
        out += b32(value)
    if op in ("update", "delete", "purge", "get", "history"):
        out += struct.pack("<Q", rev)
    if op == "keys":
        out += b16(after) + struct.pack("<I", limit)
    if op == "history":
        out += struct.pack("<I", limit)
    return out


class Conn:
    def __init__(self, addr, cluster=b"", version=1, hello=True, token=None):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=20)
        self.buf = b""
        self.next_id = 1
        if token is None:
            token = os.environ.get("GEOKV_TOKEN", "").encode()
        if hello:
            self.send(frame(T_HELLO, 0, struct.pack("<HB", version, 1) + b8(cluster) + b16(token)))
            t, _, p = self.recv()
            if t != T_HELLO_OK:
                raise RuntimeError("hello refused: %s" % (describe_error(p),))

    def send(self, data):
        self.s.sendall(data)

    def recv(self):
        """One frame: (type, id, payload); raises EOFError when the server closed."""
        while True:
            if len(self.buf) >= 16:
                ln, t, _, rid = struct.unpack_from("<IHHQ", self.buf)
                if len(self.buf) >= 16 + ln:
                    p = self.buf[16:16 + ln]
                    self.buf = self.buf[16 + ln:]
                    return t, rid, p
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError()
            self.buf += d

    def closed(self):
        """True when the server has closed (reads EOF within 2 s)."""
        try:
            self.s.settimeout(2)
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True

    def wait_closed(self, limit):
        """Milliseconds until the server closes (EOF or reset), or None after `limit` s."""
        t0 = time.monotonic()
        self.s.settimeout(0.05)
        while time.monotonic() - t0 < limit:
            try:
                if not self.s.recv(65536):
                    break
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                break
        else:
            return None
        return int((time.monotonic() - t0) * 1000)

    def req(self, payload):
        rid = self.next_id
        self.next_id += 1
        self.send(frame(T_REQ, rid, payload))
        t, r, p = self.recv()
        assert r == rid, (r, rid)
        return t, p


def describe_error(p):
    code, mlen = struct.unpack_from("<iH", p)
    msg = p[6:6 + mlen].decode(errors="replace")
    return "error=%s(%d) %s" % (ERRNAMES.get(code, "?"), code, msg)


def print_reply(t, p, body):
    if t == T_ERROR:
        print(describe_error(p))
        return 1
    print(body(p))
    return 0


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    addr, cmd, args = argv[1], argv[2], [a.encode() for a in argv[3:]]
    if cmd == "raw-badrole":
        return raw_badrole(addr)
    if cmd.startswith("raw-"):
        return raw(addr, cmd, args)
    if cmd == "flood":
        return flood(addr, args[0].decode(), int(args[1]), int(args[2]), int(args[3]),
                     float(args[4]))
    if cmd == "silent":
        ms = Conn(addr, hello=False).wait_closed(float(args[0]) if args else 30)
        print("open" if ms is None else "closed after=%d" % ms)
        return 0
    c = Conn(addr, cluster=os.environ.get("GEOKV_CLUSTER", "").encode())
    if cmd == "idle":
        ms = c.wait_closed(float(args[0]) if args else 30)
        print("open" if ms is None else "closed after=%d" % ms)
        return 0
    if cmd == "noread":
        return noread(c, args[0])
    if cmd == "busy":
        return busy(c, float(args[0]), int(args[1]) / 1000.0)
    if cmd == "dribble":
        return dribble(c, int(args[0]) / 1000.0, float(args[1]) if len(args) > 1 else 60)
    if cmd == "slowput":
        return slowput(c, args[0], args[1], int(args[2]), int(args[3]), int(args[4]) / 1000.0)
    if cmd == "bigput":
        return bigput(c, args[0], args[1], int(args[2]))
    rev_body = lambda p: "rev=%d" % struct.unpack_from("<Q", p)[0]
    if cmd == "status":
        t, p = c.req(enc_op("status"))
        def body(p):
            f = struct.unpack_from("<QBBQQQQQQ", p)
            return "revision=%d applied=%d commit=%d first=%d last=%d" % (f[4], f[5], f[6], f[7], f[8])
        return print_reply(t, p, body)
    if cmd == "bucket-add":
        maxval = int(args[1]) if len(args) > 1 else 0
        hist = int(args[2]) if len(args) > 2 else 1
        maxage = int(args[3]) if len(args) > 3 else 0
        t, p = c.req(enc_op("bucket_add", args[0], cfg=(hist, maxval, maxage)))
        return print_reply(t, p, rev_body)
    if cmd in ("put", "create"):
        t, p = c.req(enc_op(cmd, args[0], args[1], args[2]))
        return print_reply(t, p, rev_body)
    if cmd == "update":
        t, p = c.req(enc_op("update", args[0], args[1], args[2], int(args[3])))
        return print_reply(t, p, rev_body)
    if cmd in ("del", "purge"):
        op = "delete" if cmd == "del" else "purge"
        t, p = c.req(enc_op(op, args[0], args[1], rev=int(args[2]) if len(args) > 2 else 0))
        return print_reply(t, p, rev_body)
    if cmd == "get":
        t, p = c.req(enc_op("get", args[0], args[1], rev=int(args[2]) if len(args) > 2 else 0))
        def body(p):
            kl = struct.unpack_from("<H", p)[0]
            vl = struct.unpack_from("<I", p, 2 + kl)[0]
            return p[6 + kl:6 + kl + vl].decode(errors="replace")
        return print_reply(t, p, body)
    if cmd == "keys":
        t, p = c.req(enc_op("keys", args[0], args[1] if len(args) > 1 else b""))
        def body(p):
            n = struct.unpack_from("<I", p)[0]
            off, out = 4, []
            for _ in range(n):
                kl = struct.unpack_from("<H", p, off)[0]
                out.append(p[off + 2:off + 2 + kl].decode())
                off += 2 + kl
            return "\n".join(out)
        return print_reply(t, p, body)
    if cmd == "batch":
        ops = [enc_op("put", args[0], kv.split(b"=", 1)[0], kv.split(b"=", 1)[1]) for kv in args[1:]]
        payload = struct.pack("<BI", OP["batch"], len(ops)) + b"".join(ops)
        t, p = c.req(payload)
        return print_reply(t, p, lambda p: "rev=%d count=%d" % struct.unpack_from("<QI", p))
    if cmd == "load":
        return load(c, args[0], int(args[1]), int(args[2]), args[3].decode())
    if cmd == "verify":
        return verify(c, args[0], args[1].decode())
    print("unknown command", cmd, file=sys.stderr)
    return 2


def load(c, bucket, n, valsize, ackfile):
    """Pipelined puts with a window; record each acknowledged key at once (unbuffered)."""
    window, sent, acked, errors = 256, 0, 0, 0
    keys = {}
    with open(ackfile, "a", buffering=1) as ack:
        while acked + errors < n:
            while sent < n and sent - acked - errors < window:
                key = b"k%06d" % sent
                keys[sent + 1] = key
                value = (key * (valsize // len(key) + 1))[:valsize]
                c.send(frame(T_REQ, sent + 1, enc_op("put", bucket, key, value)))
                sent += 1
            t, rid, p = c.recv()
            if t == T_RESP:
                ack.write(keys.pop(rid).decode() + "\n")
                acked += 1
            else:
                keys.pop(rid, None)
                errors += 1
    print("acked=%d errors=%d" % (acked, errors))
    return 0 if errors == 0 else 1


def busy(c, seconds, interval):
    """A STATUS every `interval` s for `seconds`: the connection must stay open."""
    t0, answered = time.monotonic(), 0
    try:
        while time.monotonic() - t0 < seconds:
            t, _ = c.req(enc_op("status"))
            if t != T_RESP:
                break
            answered += 1
            time.sleep(interval)
    except (EOFError, OSError):
        print("closed after=%d answered=%d" % ((time.monotonic() - t0) * 1000, answered))
        return 1
    print("open answered=%d" % answered)
    return 0


def noread(c, bucket):
    """A peer that stops reading its replies: it must be cut, not buffered for forever.
    Never reads after the PUT: keeps trying to send GETs and notices the server's reset."""
    t, _ = c.req(enc_op("put", bucket, b"big", b"x" * (1 << 20)))
    if t != T_RESP:
        print("put failed")
        return 2
    get = frame(T_REQ, 1, enc_op("get", bucket, b"big"))
    c.s.settimeout(0.2)
    stalled = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            c.s.send(get)
        except (socket.timeout, TimeoutError, BlockingIOError):
            if stalled is None:
                stalled = time.monotonic()  # our send buffer is full: the server stopped reading
            if time.monotonic() - stalled > 30:
                break
        except OSError:
            print("closed after=%d" % ((time.monotonic() - (stalled or time.monotonic())) * 1000))
            return 0
    print("open")
    return 0


def poll_reply(c):
    """Read what has arrived without waiting: sets c.reply (the first frame) and c.eof."""
    c.s.setblocking(False)
    try:
        while True:
            d = c.s.recv(65536)
            if not d:
                c.eof = True
                break
            c.buf += d
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        c.eof = True
    if c.reply is None and len(c.buf) >= 16:
        ln, t, _, _ = struct.unpack_from("<IHHQ", c.buf)
        if len(c.buf) >= 16 + ln:
            p = c.buf[16:16 + ln]
            c.reply = describe_error(p) if t == T_ERROR else "type=%d" % t


def flood(addr, mode, n, ln, send, hold):
    """Many connections each holding part of a big frame (the memory-pinning attack)."""
    cluster = os.environ.get("GEOKV_CLUSTER", "").encode()
    ftype = T_HELLO if mode == "hello" else T_REQ
    first = min(send, 65536)
    conns = []
    for i in range(n):
        c = Conn(addr, cluster=cluster, hello=(mode == "session"))
        c.reply, c.eof = None, False
        try:
            c.send(struct.pack("<IHHQ", ln, ftype, 0, 100 + i) + b"\0" * first)
        except OSError:
            c.eof = True
        conns.append(c)
    time.sleep(0.3)
    chunk = b"\0" * (1 << 20)
    for c in conns:
        poll_reply(c)
        if c.reply is not None or c.eof:
            continue
        left = send - first
        c.s.settimeout(10)
        try:
            while left > 0:
                k = min(left, len(chunk))
                c.s.sendall(chunk[:k])
                left -= k
        except (socket.timeout, TimeoutError):
            pass
        except OSError:
            c.eof = True
    time.sleep(0.5)
    errors, first_msg = {}, ""
    for c in conns:
        poll_reply(c)
        if c.reply is not None:
            name = c.reply.split("(")[0].replace("error=", "")
            errors[name] = errors.get(name, 0) + 1
            first_msg = first_msg or c.reply
    closed = sum(1 for c in conns if c.eof)
    print("flood conns=%d open=%d closed=%d errors=%s" % (
        n, n - closed, closed, ",".join("%s:%d" % kv for kv in sorted(errors.items())) or "none"))
    print("first error:", first_msg or "none")
    print("holding", flush=True)
    time.sleep(hold)
    return 0


def dribble(c, interval, limit):
    """A frame one byte at a time: each byte resets the idle clock, not the frame's."""
    data = frame(T_REQ, 1, enc_op("put", b"b", b"k", b"v" * 4096))
    t0, sent = time.monotonic(), 0
    c.s.settimeout(interval)
    while time.monotonic() - t0 < limit and sent < len(data):
        try:
            c.s.send(data[sent:sent + 1])
            sent += 1
            if not c.s.recv(65536):
                break
        except (socket.timeout, TimeoutError):
            continue
        except OSError:
            break
    else:
        print("open sent=%d" % sent)
        return 0
    print("closed after=%d sent=%d" % ((time.monotonic() - t0) * 1000, sent))
    return 0


def slowput(c, bucket, key, size, chunks, interval):
    """A big frame sent slowly but steadily: it must not be cut."""
    data = frame(T_REQ, 1, enc_op("put", bucket, key, b"s" * size))
    step = (len(data) + chunks - 1) // chunks
    for i in range(0, len(data), step):
        if i:
            time.sleep(interval)
        c.send(data[i:i + step])
    t, _, p = c.recv()
    return print_reply(t, p, lambda p: "rev=%d" % struct.unpack_from("<Q", p)[0])


def bigput(c, bucket, key, size):
    value = os.urandom(size)
    t, p = c.req(enc_op("put", bucket, key, value))
    if t != T_RESP:
        print(describe_error(p))
        return 1
    rev = struct.unpack_from("<Q", p)[0]
    t, p = c.req(enc_op("get", bucket, key))
    if t != T_RESP:
        print(describe_error(p))
        return 1
    kl = struct.unpack_from("<H", p)[0]
    vl = struct.unpack_from("<I", p, 2 + kl)[0]
    got = p[6 + kl:6 + kl + vl]
    print("rev=%d verified=%d" % (rev, len(got) if got == value else -1))
    return 0 if got == value else 1


# Answers a client retries: the member lost its leader, or is busy electing one.
RETRYABLE = ("not the leader", "timed out", "shutting down", "busy")


def verify(c, bucket, ackfile):
    """GET every key listed in ackfile (pipelined); all must be present. A read refused
    for a reason a client retries (a leader change under way) is retried for up to 20 s;
    only a key answered absent, or still refused then, counts as missing."""
    keys = [k for k in open(ackfile).read().split("\n") if k]
    present = 0
    deadline = time.time() + 20
    while True:
        retry, missing, shown = [], 0, []
        for i in range(0, len(keys), 512):
            chunk = keys[i:i + 512]
            c.send(b"".join(frame(T_REQ, j + 1, enc_op("get", bucket, k.encode()))
                            for j, k in enumerate(chunk)))
            for _ in chunk:
                t, rid, p = c.recv()
                if t == T_RESP:
                    present += 1
                    continue
                why = describe_error(p)
                if any(r in why for r in RETRYABLE):
                    retry.append(chunk[rid - 1])
                else:
                    missing += 1
                if len(shown) < 5:
                    shown.append("missing %s %s" % (chunk[rid - 1], why))
        if not retry or time.time() > deadline:
            break
        keys = retry
        time.sleep(0.2)
    missing += len(retry)
    if missing:
        print("\n".join(shown))
    print("present=%d missing=%d" % (present, missing))
    return 0 if missing == 0 else 1


def raw_badrole(addr):
    """A HELLO with role 99 (no proto_role): refused, then closed."""
    cluster = os.environ.get("GEOKV_CLUSTER", "").encode()
    token = os.environ.get("GEOKV_TOKEN", "").encode()
    c = Conn(addr, hello=False)
    c.send(frame(T_HELLO, 0, struct.pack("<HB", 1, 99) + b8(cluster) + b16(token)))
    try:
        t, _, p = c.recv()
        reply = describe_error(p) if t == T_ERROR else "type=%d" % t
    except EOFError:
        reply = "no-reply"
    except (socket.timeout, TimeoutError):
        reply = "timeout"
    print(reply, "closed" if c.closed() else "open")
    return 0


def raw(addr, cmd, args):
    cluster = os.environ.get("GEOKV_CLUSTER", "").encode()
    hello_needed = cmd not in ("raw-nohello", "raw-badcluster", "raw-badversion", "raw-garbage",
                               "raw-hello")
    c = Conn(addr, cluster=cluster, hello=hello_needed)
    if cmd == "raw-hello":
        # Just the HELLO (with GEOKV_TOKEN): HELLO_OK is "type=2 open".
        token = os.environ.get("GEOKV_TOKEN", "").encode()
        c.send(frame(T_HELLO, 0, struct.pack("<HB", 1, 1) + b8(cluster) + b16(token)))
    elif cmd == "raw-badflags":
        c.send(frame(T_REQ, 7, enc_op("status"), flags=0x8000))
    elif cmd == "raw-toobig":
        # Announce a huge payload, send only a little: the server must not wait for it.
        c.send(struct.pack("<IHHQ", int(args[0]), T_REQ, 0, 8) + b"x" * 100)
    elif cmd == "raw-garbage":
        c.send(os.urandom(8) + b"\xff\xff\xff\x7f" + os.urandom(64))
    elif cmd == "raw-nohello":
        c.send(frame(T_REQ, 9, enc_op("status")))
    elif cmd == "raw-badcluster":
        c.send(frame(T_HELLO, 0, struct.pack("<HB", 1, 1) + b8(b"not-this-cluster") + b16(b"")))
    elif cmd == "raw-badversion":
        c.send(frame(T_HELLO, 0, struct.pack("<HB", 99, 1) + b8(b"") + b16(b"")))
    elif cmd == "raw-badop":
        c.send(frame(T_REQ, 10, b"\xee\x01\x02"))
    elif cmd == "raw-truncated-op":
        c.send(frame(T_REQ, 11, enc_op("put", b"b", b"k", b"value")[:-3]))
    elif cmd == "raw-badbatch":
        inner = enc_op("put", b"b", b"k", b"v")
        c.send(frame(T_REQ, 12, struct.pack("<BI", OP["batch"], 2) + inner + b"\x20\x01"))
    elif cmd == "raw-unknown-type":
        c.send(frame(99, 13, b""))
    elif cmd == "raw-dup-hello":
        # A second HELLO on an open session: a session error, then closed.
        token = os.environ.get("GEOKV_TOKEN", "").encode()
        c.send(frame(T_HELLO, 0, struct.pack("<HB", 1, 1) + b8(cluster) + b16(token)))
    else:
        print("unknown raw command", cmd, file=sys.stderr)
        return 2
    try:
        t, rid, p = c.recv()
        reply = describe_error(p) if t == T_ERROR else "type=%d" % t
    except EOFError:
        reply = "no-reply"
    except (socket.timeout, TimeoutError):
        reply = "timeout"
    print(reply, "closed" if c.closed() else "open")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, EOFError, RuntimeError) as e:
        print("io-error:", e, file=sys.stderr)
        sys.exit(2)
