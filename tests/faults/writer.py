#!/usr/bin/env python3
"""The fault campaign's client: a writer that records what the group acknowledged, and a
checker that reads it back.

  writer.py write SERVERS BUCKET ACKFILE STOPFILE
      Pipelined PUTs (window 64) of unique keys w<pid>-<n>, each value derived from its key,
      to one member of SERVERS (comma-separated) at a time. Each acknowledged key is appended
      to ACKFILE the moment its response arrives; a write that got an ERROR, a timeout or a
      lost connection is "unknown" (it may or may not have been applied) and is not counted.
      On any failure it moves to another member after 50 ms. Stops when STOPFILE exists;
      prints "acked=N unknown=N reconnects=N longest_gap_ms=N".
  writer.py verify ADDR BUCKET ACKFILE
      GET every acknowledged key through ADDR (linearizable reads): prints
      "present=N lost=N wrong=N"; exit 1 when any is lost or has the wrong value.

Only the standard library; frames as in proto/proto.h (rawclient.py has the same codec).
"""
import os
import random
import socket
import struct
import sys
import time

T_HELLO, T_HELLO_OK, T_ERROR, T_REQ, T_RESP = 1, 2, 3, 16, 17
OP_PUT, OP_GET = 3, 32
WINDOW = 64


def frame(ftype, rid, payload):
    return struct.pack("<IHHQ", len(payload), ftype, 0, rid) + payload


def put(bucket, key, value):
    return (struct.pack("<BB", OP_PUT, len(bucket)) + bucket + struct.pack("<H", len(key)) + key +
            struct.pack("<I", len(value)) + value)


def get(bucket, key):
    return (struct.pack("<BB", OP_GET, len(bucket)) + bucket + struct.pack("<H", len(key)) + key +
            struct.pack("<Q", 0))


def value_of(key):
    return (key + b"|") * 6


class Conn:
    def __init__(self, addr, timeout=3.0):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.s.settimeout(timeout)
        self.buf = b""
        cluster = os.environ.get("GEOKV_CLUSTER", "").encode()
        self.s.sendall(frame(T_HELLO, 0, struct.pack("<HBB", 1, 1, len(cluster)) + cluster +
                             struct.pack("<H", 0)))
        t, _, p = self.recv()
        if t != T_HELLO_OK:
            raise OSError("hello refused")

    def recv(self):
        while True:
            if len(self.buf) >= 16:
                ln, t, _, rid = struct.unpack_from("<IHHQ", self.buf)
                if len(self.buf) >= 16 + ln:
                    p = self.buf[16:16 + ln]
                    self.buf = self.buf[16 + ln:]
                    return t, rid, p
            d = self.s.recv(1 << 16)
            if not d:
                raise EOFError("closed")
            self.buf += d

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def write(servers, bucket, ackfile, stopfile):
    servers = servers.split(",")
    acked = unknown = reconnects = 0
    n = 0
    # GEOKV_WRITE_RATE=N: at most N puts a second (a short campaign keeps its data small)
    rate = float(os.environ.get("GEOKV_WRITE_RATE", "0") or 0)
    t0 = time.monotonic()
    last_ack = time.monotonic()
    longest = 0.0
    prefix = b"w%d-" % os.getpid()
    with open(ackfile, "a", buffering=1) as ack:
        while not os.path.exists(stopfile):
            addr = random.choice(servers)
            try:
                c = Conn(addr)
            except (OSError, EOFError):
                reconnects += 1
                time.sleep(0.05)
                continue
            inflight = {}
            try:
                while not os.path.exists(stopfile):
                    while len(inflight) < WINDOW:
                        if rate > 0:
                            ahead = t0 + n / rate - time.monotonic()
                            if ahead > 0:
                                if inflight:
                                    break  # collect answers meanwhile
                                time.sleep(ahead)
                        n += 1
                        key = prefix + b"%09d" % n
                        inflight[n] = key
                        c.s.sendall(frame(T_REQ, n, put(bucket, key, value_of(key))))
                    t, rid, p = c.recv()
                    key = inflight.pop(rid, None)
                    if key is None:
                        continue
                    if t == T_RESP:
                        ack.write(key.decode() + "\n")
                        acked += 1
                        now = time.monotonic()
                        longest = max(longest, now - last_ack)
                        last_ack = now
                    else:
                        unknown += 1
                        if t == T_ERROR:
                            raise OSError("error reply")  # not the leader, timed out: move on
            except (OSError, EOFError, socket.timeout):
                unknown += len(inflight)
                reconnects += 1
                c.close()
                time.sleep(0.05)
    print("acked=%d unknown=%d reconnects=%d longest_gap_ms=%d" %
          (acked, unknown, reconnects, longest * 1000))
    return 0


def verify(addr, bucket, ackfile):
    keys = [k.encode() for k in open(ackfile).read().split("\n") if k]
    present = lost = wrong = 0
    c = Conn(addr, timeout=20)
    for i in range(0, len(keys), 256):
        chunk = keys[i:i + 256]
        c.s.sendall(b"".join(frame(T_REQ, j + 1, get(bucket, k)) for j, k in enumerate(chunk)))
        for _ in chunk:
            t, rid, p = c.recv()
            key = chunk[rid - 1]
            if t != T_RESP:
                lost += 1
                if lost <= 5:
                    print("lost", key.decode())
                continue
            # record: bytes(u16) key, bytes(u32) value, ...
            kl = struct.unpack_from("<H", p)[0]
            vl = struct.unpack_from("<I", p, 2 + kl)[0]
            v = p[6 + kl:6 + kl + vl]
            if v != value_of(key):
                wrong += 1
                if wrong <= 5:
                    print("wrong", key.decode(), v[:40])
            else:
                present += 1
    print("present=%d lost=%d wrong=%d" % (present, lost, wrong))
    return 0 if lost == 0 and wrong == 0 else 1


def main():
    if len(sys.argv) >= 6 and sys.argv[1] == "write":
        return write(sys.argv[2], sys.argv[3].encode(), sys.argv[4], sys.argv[5])
    if len(sys.argv) >= 5 and sys.argv[1] == "verify":
        return verify(sys.argv[2], sys.argv[3].encode(), sys.argv[4])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
