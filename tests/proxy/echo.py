#!/usr/bin/env python3
"""Both ends of a connection through geokv-proxy, for tests/proxy/proxy_test.sh.

    echo.py SCENARIO ARGS... --proxy HOST:PORT --target PORT --control HOST:PORT [--link NAME]

Each scenario serves the link's target itself (127.0.0.1:TARGET, in a thread) and connects to
the proxy as the client, so it sees exactly what arrives at each end and when. It prints one
line of key=value results and exits 0, or prints what went wrong and exits 1. Mid-scenario
fault changes go straight to the control port. Every blocking call has a timeout.

Scenarios:
  bulk SIZE            SIZE random bytes up, echoed down, then EOF both ways: byte-exact?
  rtt N                median/min/max round trip of 1 byte, N times (after 3 warm-ups)
  order N GAP_MS       N numbered 4-byte messages, GAP_MS apart: in order? one-way latency
  hold DIR SIZE        hold DIR on: nothing within 300 ms, open; off: all SIZE bytes, in order
  blackhole DIR        blackhole DIR on: sender succeeds, nothing arrives; off: flows again
  partition            existing connection reset, new ones refused; off: new ones work
  reset                existing connection reset at both ends; a new one works
  corrupt DIR N        exactly one bit differs, in byte N (1-based); the next bytes are clean
  halfclose            request + EOF up, response + EOF down
  sink SIZE PID        push up to SIZE bytes at a target that never reads; PID's VmRSS/VmHWM
  idle                 open a connection, queue bytes under the current faults, sleep forever
  ctlraw TEXT          send TEXT (\\n escapes) to the control port, print the replies
  notarget             nobody serves the target: the client sees a reset
"""
import argparse
import hashlib
import os
import queue
import random
import select
import socket
import statistics
import struct
import sys
import threading
import time


class Fail(Exception):
    pass


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


class Target:
    """A listener on the link's target port; accepted sockets queue up for the scenario."""

    def __init__(self, port):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(16)
        self.q = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.q.put(s)

    def accept(self, timeout=5.0):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None


class Ctx:
    def __init__(self, a):
        self.a = a
        self.proxy = hostport(a.proxy)
        self.control = hostport(a.control)
        self.link = a.link
        # notarget wants nobody at the target; ctlraw only talks to the control port
        serve = a.target and a.scenario not in ("notarget", "ctlraw")
        self.tgt = Target(a.target) if serve else None

    def connect(self):
        c = socket.create_connection(self.proxy, timeout=5)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    def pair(self):
        """A client socket and the target's end of the same proxied connection."""
        c = self.connect()
        t = self.tgt.accept()
        if t is None:
            raise Fail("target saw no connection within 5 s")
        c.settimeout(5)
        t.settimeout(5)
        return c, t

    def ctl(self, cmd, want_ok=True):
        with socket.create_connection(self.control, timeout=5) as s:
            s.sendall(cmd.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                d = s.recv(4096)
                if not d:
                    break
                buf += d
        reply = buf.decode().strip()
        if want_ok and not reply.startswith("ok"):
            raise Fail("control %r: %r" % (cmd, reply))
        return reply

    def stats(self):
        r = self.ctl("stats " + self.link)
        return {k: int(v) for k, v in (f.split("=") for f in r.split()[1:])}


def recv_exact(s, n, timeout=10.0):
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fail("timed out after %d of %d bytes" % (len(out), n))
        s.settimeout(left)
        try:
            d = s.recv(min(1 << 20, n - len(out)))
        except socket.timeout:
            continue
        if not d:
            raise Fail("EOF after %d of %d bytes" % (len(out), n))
        out += d
    return bytes(out)


def nothing_arrives(s, secs):
    """True when s stays unreadable for secs: no bytes, no EOF, no reset."""
    r, _, _ = select.select([s], [], [], secs)
    return not r


def is_open(s):
    """No EOF, reset or pending error on s (without consuming data)."""
    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
        return False
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return True
    try:
        return len(s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)) > 0
    except OSError:
        return False


def expect_reset(s, who, timeout=3.0):
    """s must see a connection reset (not a clean EOF, not silence)."""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                raise Fail("%s saw a clean EOF, want a reset" % who)
    except ConnectionResetError:
        return
    except socket.timeout:
        raise Fail("%s saw nothing within %.0f s, want a reset" % (who, timeout))


def ends(c, t, d):
    """(sender, receiver) for a direction"""
    return (c, t) if d == "up" else (t, c)


def pattern(n, seed=1):
    return random.Random(seed).randbytes(n)


def round_trip(c, t, msg=b"ping"):
    c.sendall(msg)
    if recv_exact(t, len(msg)) != msg:
        raise Fail("up bytes differ")
    t.sendall(msg)
    if recv_exact(c, len(msg)) != msg:
        raise Fail("down bytes differ")


# ---- scenarios --------------------------------------------------------------------------------

def sc_bulk(x, size):
    size = int(size)
    data = os.urandom(size)
    c, t = x.pair()
    t_hash = hashlib.sha256()
    t_n = [0]
    err = []

    def echo():
        try:
            while True:
                d = t.recv(1 << 18)
                if not d:
                    break
                t_hash.update(d)
                t_n[0] += len(d)
                t.sendall(d)
            t.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append("target: %r" % e)

    def send():
        try:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append("client send: %r" % e)

    t0 = time.monotonic()
    th = [threading.Thread(target=echo, daemon=True), threading.Thread(target=send, daemon=True)]
    for h in th:
        h.start()
    got = hashlib.sha256()
    n = 0
    c.settimeout(30)
    while True:
        d = c.recv(1 << 18)
        if not d:
            break
        got.update(d)
        n += len(d)
    for h in th:
        h.join(10)
    secs = time.monotonic() - t0
    want = hashlib.sha256(data).hexdigest()
    if err:
        raise Fail("; ".join(err))
    if t_n[0] != size or t_hash.hexdigest() != want:
        raise Fail("target got %d bytes, sha %s; sent %d, sha %s" % (t_n[0], t_hash.hexdigest()[:16], size, want[:16]))
    if n != size or got.hexdigest() != want:
        raise Fail("client got %d bytes back, sha %s; want %d, sha %s" % (n, got.hexdigest()[:16], size, want[:16]))
    c.close()
    t.close()
    print("bulk bytes=%d up=exact down=exact eof=both secs=%.2f" % (size, secs))


def sc_rtt(x, n):
    n = int(n)
    c, t = x.pair()
    stop = threading.Event()

    def echo():
        try:
            while not stop.is_set():
                d = t.recv(4096)
                if not d:
                    return
                t.sendall(d)
        except OSError:
            pass

    threading.Thread(target=echo, daemon=True).start()
    c.settimeout(5)
    rtts = []
    for i in range(n + 3):
        t0 = time.monotonic()
        c.sendall(b"x")
        if c.recv(1) != b"x":
            raise Fail("echo lost")
        if i >= 3:
            rtts.append((time.monotonic() - t0) * 1000)
    stop.set()
    c.close()
    print("rtt n=%d median_ms=%.2f min_ms=%.2f max_ms=%.2f" % (
        n, statistics.median(rtts), min(rtts), max(rtts)))


def sc_order(x, n, gap_ms):
    n, gap = int(n), float(gap_ms) / 1000
    c, t = x.pair()
    sent = [0.0] * n

    def send():
        for i in range(n):
            sent[i] = time.monotonic()
            c.sendall(struct.pack(">I", i))
            time.sleep(gap)

    threading.Thread(target=send, daemon=True).start()
    lat = []
    buf = b""
    expect = 0
    deadline = time.monotonic() + 30
    while expect < n:
        if time.monotonic() > deadline:
            raise Fail("timed out at message %d of %d" % (expect, n))
        t.settimeout(5)
        d = t.recv(65536)
        if not d:
            raise Fail("EOF at message %d" % expect)
        now = time.monotonic()
        buf += d
        while len(buf) >= 4 and expect < n:
            (v,) = struct.unpack(">I", buf[:4])
            buf = buf[4:]
            if v != expect:
                raise Fail("reordered: message %d arrived where %d was due" % (v, expect))
            lat.append((now - sent[v]) * 1000)
            expect += 1
    c.close()
    t.close()
    print("order n=%d in_order=yes min_ms=%.2f max_ms=%.2f spread_ms=%.2f" % (
        n, min(lat), max(lat), max(lat) - min(lat)))


def sc_hold(x, d, size):
    size = int(size)
    c, t = x.pair()
    round_trip(c, t)
    x.ctl("hold %s %s on" % (x.link, d))
    snd, rcv = ends(c, t, d)
    data = pattern(size)
    err = []

    def send():
        try:
            snd.settimeout(30)
            snd.sendall(data)
        except OSError as e:
            err.append(repr(e))

    th = threading.Thread(target=send, daemon=True)
    th.start()
    if not nothing_arrives(rcv, 0.3):
        raise Fail("bytes (or EOF) arrived within 300 ms while held")
    if not is_open(rcv) or not is_open(snd):
        raise Fail("connection not open while held")
    st = x.stats()
    if st["held"] == 0 or st["conns"] != 1:
        raise Fail("stats while held: %r" % st)
    held = st["held"]
    x.ctl("hold %s %s off" % (x.link, d))
    got = recv_exact(rcv, size, timeout=20)
    th.join(10)
    if err:
        raise Fail("sender: " + "; ".join(err))
    if got != data:
        i = next(i for i in range(size) if got[i] != data[i])
        raise Fail("released bytes differ from byte %d" % i)
    round_trip(c, t)
    c.close()
    t.close()
    print("hold dir=%s bytes=%d stalled_ms=300 open=yes held=%d released=all in_order=yes" % (d, size, held))


def sc_blackhole(x, d):
    c, t = x.pair()
    round_trip(c, t)
    before = x.stats()["dropped"]
    x.ctl("blackhole %s %s on" % (x.link, d))
    snd, rcv = ends(c, t, d)
    n = 100000
    snd.sendall(pattern(n))  # the sender sees success
    if not nothing_arrives(rcv, 0.3):
        raise Fail("bytes arrived through the blackhole")
    if not is_open(rcv) or not is_open(snd):
        raise Fail("connection not open")
    deadline = time.monotonic() + 3
    while x.stats()["dropped"] - before < n and time.monotonic() < deadline:
        time.sleep(0.02)
    dropped = x.stats()["dropped"] - before
    if dropped != n:
        raise Fail("dropped=%d, want %d" % (dropped, n))
    x.ctl("blackhole %s %s off" % (x.link, d))
    snd.sendall(b"after")
    got = recv_exact(rcv, 5)
    if got != b"after":
        raise Fail("after blackhole off got %r" % got)
    if not nothing_arrives(rcv, 0.1):
        raise Fail("more than the new bytes arrived")
    c.close()
    t.close()
    print("blackhole dir=%s sent=%d arrived=0 dropped=%d after_off=flows" % (d, n, dropped))


def sc_partition(x):
    c, t = x.pair()
    round_trip(c, t)
    r = x.ctl("partition %s on" % x.link)
    if "reset=1" not in r:
        raise Fail("partition on: %r" % r)
    expect_reset(c, "client")
    expect_reset(t, "target")
    # The kernel completes the handshake and the proxy resets at once: connect itself may
    # already report the reset, or the first read does.
    try:
        c2 = x.connect()
        c2.settimeout(3)
        c2.sendall(b"hello")
        d = c2.recv(10)
        if d:
            raise Fail("a new connection during the partition got %r" % d)
        raise Fail("a new connection during the partition saw EOF, want reset")
    except (ConnectionResetError, BrokenPipeError):
        pass
    if x.tgt.accept(timeout=0.3) is not None:
        raise Fail("the target saw a connection during the partition")
    x.ctl("partition %s off" % x.link)
    c3, t3 = x.pair()
    round_trip(c3, t3)
    print("partition existing=reset new=refused after_off=works")


def sc_reset(x):
    c, t = x.pair()
    round_trip(c, t)
    r = x.ctl("reset %s" % x.link)
    if "conns=1" not in r:
        raise Fail("reset: %r" % r)
    expect_reset(c, "client")
    expect_reset(t, "target")
    c2, t2 = x.pair()
    round_trip(c2, t2)
    print("reset client=reset target=reset new=works")


def sc_corrupt(x, d, n):
    n = int(n)
    c, t = x.pair()
    snd, rcv = ends(c, t, d)
    x.ctl("corrupt %s %s %d" % (x.link, d, n))
    size = max(4096, n + 1000)
    data = pattern(size, seed=7)
    snd.sendall(data)
    got = recv_exact(rcv, size)
    diff = [i for i in range(size) if got[i] != data[i]]
    if len(diff) != 1:
        raise Fail("%d bytes differ (at %r), want exactly 1" % (len(diff), diff[:10]))
    off = diff[0]
    x_or = got[off] ^ data[off]
    if bin(x_or).count("1") != 1:
        raise Fail("byte %d differs by %#x, not one bit" % (off, x_or))
    if off != n - 1:
        raise Fail("byte %d (0-based) corrupted, want %d" % (off, n - 1))
    snd.sendall(data)
    if recv_exact(rcv, size) != data:
        raise Fail("corruption was not one-shot")
    c.close()
    t.close()
    print("corrupt dir=%s byte=%d offset=%d bits_flipped=1 xor=%#x next=clean" % (d, n, off, x_or))


def sc_halfclose(x):
    c, t = x.pair()
    c.sendall(b"request")
    c.shutdown(socket.SHUT_WR)
    if recv_exact(t, 7) != b"request":
        raise Fail("target got the wrong request")
    t.settimeout(5)
    if t.recv(10) != b"":
        raise Fail("target saw more than request + EOF")
    t.sendall(b"response")  # its write side is still open
    t.shutdown(socket.SHUT_WR)
    if recv_exact(c, 8) != b"response":
        raise Fail("client got the wrong response")
    c.settimeout(5)
    if c.recv(10) != b"":
        raise Fail("client saw no EOF")
    deadline = time.monotonic() + 3
    while x.stats()["conns"] != 0:
        if time.monotonic() > deadline:
            raise Fail("the proxy kept the connection after both EOFs")
        time.sleep(0.02)
    c.close()
    t.close()
    print("halfclose up_eof=delivered down_after_eof=works closed=yes")


def sc_notarget(x):
    """Nobody listens at the target: the client's connection is reset."""
    try:
        c = x.connect()
        expect_reset(c, "client")
    except ConnectionResetError:
        pass
    print("notarget client=reset")


def proc_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise Fail("no %s for pid %d" % (field, pid))


def sc_sink(x, size, pid):
    size, pid = int(size), int(pid)
    c, t = x.pair()  # t is never read
    block = b"\xab" * (1 << 20)
    pushed = 0
    c.settimeout(2)  # no progress for 2 s = back-pressure reached
    t0 = time.monotonic()
    while pushed < size and time.monotonic() - t0 < 60:
        try:
            pushed += c.send(block[: min(len(block), size - pushed)])
        except socket.timeout:
            break
    st = x.stats()
    rss, hwm = proc_kb(pid, "VmRSS"), proc_kb(pid, "VmHWM")
    c.close()
    t.close()
    print("sink wanted=%d pushed=%d held=%d rss_kb=%d hwm_kb=%d" % (size, pushed, st["held"], rss, hwm))


def sc_idle(x):
    c, t = x.pair()
    c.sendall(pattern(1 << 20))
    t.sendall(pattern(1 << 20))
    print("idle open", flush=True)
    time.sleep(3600)


def sc_ctlraw(x, text):
    text = text.encode().decode("unicode_escape").encode("latin-1")
    want = text.count(b"\n")
    with socket.create_connection(x.control, timeout=5) as s:
        s.sendall(text)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    sys.stdout.write(buf.decode(errors="replace"))
    print("replies=%d lines_sent=%d" % (buf.count(b"\n"), want))


SCENARIOS = {
    "bulk": sc_bulk, "rtt": sc_rtt, "order": sc_order, "hold": sc_hold,
    "blackhole": sc_blackhole, "partition": sc_partition, "reset": sc_reset,
    "corrupt": sc_corrupt, "halfclose": sc_halfclose, "sink": sc_sink, "idle": sc_idle,
    "ctlraw": sc_ctlraw, "notarget": sc_notarget,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=SCENARIOS)
    ap.add_argument("args", nargs="*")
    ap.add_argument("--proxy", default="127.0.0.1:0")
    ap.add_argument("--target", type=int, default=0)
    ap.add_argument("--control", required=True)
    ap.add_argument("--link", default="a")
    a = ap.parse_args()
    try:
        SCENARIOS[a.scenario](Ctx(a), *a.args)
    except (Fail, OSError) as e:
        print("FAIL %s: %s" % (a.scenario, e))
        sys.exit(1)


if __name__ == "__main__":
    main()
