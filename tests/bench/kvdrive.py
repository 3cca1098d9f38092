#!/usr/bin/env python3
"""Clients for the replicated benchmarks (replicated-put.sh, failover.sh): geokv through the
raw-frame client of tests/integration/rawclient.py, etcd through its v3 HTTP/JSON gateway
(/v3/kv/put), both over persistent connections so neither pays a process start per put.

usage: kvdrive.py SYSTEM CMD ARGS...     SYSTEM: geokv | etcd
  seq ADDR N VALSIZE              N sequential puts on one connection: "p50_ms p99_ms puts_per_s"
  conc ADDR,... N VALSIZE CONNS [START_AT]
                                  N puts over CONNS connections, each with one put in flight
                                  (geokv: one pipelined connection with CONNS in flight):
                                  "puts_per_s p99_ms errors"
  writer ADDR,... VALSIZE TIMEOUT_S OUTFILE
                                  sequential puts until SIGTERM; each acknowledged put appends
                                  "sent_s acked_s" (wall clock) to OUTFILE; a put that fails or takes longer
                                  than TIMEOUT_S is retried on the next address
  gaps ACKFILE KILLFILE           per kill (wall-clock time the leader was dead, one a line):
                                  "kill_to_ack_s longest_gap_s" (the first acknowledged write
                                  sent after the kill; the longest gap between acknowledged
                                  writes from the last before the kill to the next kill), then
                                  "writes N"
"""
import base64, json, os, signal, socket, struct, sys, threading, time, http.client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import rawclient as rc  # noqa: E402

BUCKET = b"bench"
NO_LEADER = -30206


def pct(a, q):
    a = sorted(a)
    return a[min(int(len(a) * q), len(a) - 1)] if a else float("nan")


class Geokv:
    def __init__(self, addr, timeout=20):
        # the HELLO under `timeout` too: a stopped member's kernel still accepts connections
        self.c = rc.Conn(addr, hello=False)
        self.c.s.settimeout(timeout)
        cluster = os.environ.get("GEOKV_CLUSTER", "").encode()
        token = os.environ.get("GEOKV_TOKEN", "").encode()
        self.c.send(rc.frame(rc.T_HELLO, 0, struct.pack("<HB", 1, 1) + rc.b8(cluster) + rc.b16(token)))
        t, _, p = self.c.recv()
        if t != rc.T_HELLO_OK:
            raise RuntimeError("hello refused: %s" % (rc.describe_error(p),))

    retries = 0

    def put(self, key, value, retry=True):
        while True:
            t, p = self.c.req(rc.enc_op("put", BUCKET, key, value))
            if t == rc.T_RESP:
                return
            # no leader (an election): retried, as the geokv client does, and counted
            if retry and struct.unpack_from("<i", p)[0] == NO_LEADER:
                Geokv.retries += 1
                time.sleep(0.01)
                continue
            raise RuntimeError(rc.describe_error(p))

    def close(self):
        self.c.s.close()


class Etcd:
    def __init__(self, addr, timeout=20):
        host, port = addr.rsplit(":", 1)
        self.h = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def put(self, key, value):
        body = json.dumps({"key": base64.b64encode(key).decode(),
                           "value": base64.b64encode(value).decode()})
        self.h.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
        r = self.h.getresponse()
        d = r.read()
        if r.status != 200 or b'"error"' in d[:20]:
            raise RuntimeError("etcd %d %s" % (r.status, d[:200]))

    def close(self):
        self.h.close()


SYS = {"geokv": Geokv, "etcd": Etcd}


def value(key, size):
    return (key * (size // len(key) + 1))[:size]


def seq(system, addr, n, size):
    c = SYS[system](addr)
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        k = b"s%08d" % i
        t = time.perf_counter()
        c.put(k, value(k, size))
        lat.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - t0
    if getattr(c, "retries", 0):
        print("kvdrive: %d puts retried (no leader)" % c.retries, file=sys.stderr)
    print("%.3f %.3f %.1f" % (pct(lat, 0.5), pct(lat, 0.99), n / wall))


def conc_geokv(addrs, n, size, window):
    """One connection, `window` single puts in flight (the protocol pipelines). A put refused
    (no leader during an election) is put again and counted in errors."""
    c = rc.Conn(addrs[0], cluster=os.environ.get("GEOKV_CLUSTER", "").encode())
    nxt = done = errors = rid = 0
    start, keys, redo = {}, {}, []
    lat = []
    t0 = time.perf_counter()
    while done < n:
        while (nxt < n or redo) and len(start) < window:
            if redo:
                k = redo.pop()
            else:
                k = b"c%08d" % nxt
                nxt += 1
            rid += 1
            keys[rid] = k
            start[rid] = time.perf_counter()
            c.send(rc.frame(rc.T_REQ, rid, rc.enc_op("put", BUCKET, k, value(k, size))))
        t, r, p = c.recv()
        lat.append((time.perf_counter() - start.pop(r)) * 1000)
        k = keys.pop(r)
        if t == rc.T_RESP:
            done += 1
        else:
            if errors == 0:
                print("kvdrive: geokv put refused, put again: %s" % rc.describe_error(p), file=sys.stderr)
            errors += 1
            redo.append(k)
    wall = time.perf_counter() - t0
    print("%.1f %.3f %d" % (n / wall, pct(lat, 0.99), errors))


def conc_threads(system, addrs, n, size, conns, start_at=0.0):
    """`conns` connections (spread over the members), each a thread with one put in flight.
    With start_at (wall clock), the puts start then (several client processes at once) and
    the line also carries the wall-clock end: "puts_per_s p99_ms errors end_s"."""
    lat, errs = [], [0]
    lock = threading.Lock()
    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    clients = [SYS[system](addrs[i % len(addrs)]) for i in range(conns)]

    def run(i):
        my = []
        for j in range(per[i]):
            k = b"c%03d%08d" % (i, j)
            t = time.perf_counter()
            try:
                clients[i].put(k, value(k, size))
            except Exception:
                with lock:
                    errs[0] += 1
                continue
            my.append((time.perf_counter() - t) * 1000)
        with lock:
            lat.extend(my)

    th = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
    if start_at:
        time.sleep(max(0.0, start_at - time.time()))
    t0 = time.perf_counter()
    for x in th:
        x.start()
    for x in th:
        x.join()
    wall = time.perf_counter() - t0
    print("%.1f %.3f %d %.6f" % (n / wall, pct(lat, 0.99), errs[0], time.time()))


def writer(system, addrs, size, timeout, outfile):
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__(0, True))
    i, c, n = 0, None, 0
    with open(outfile, "a", buffering=1) as out:
        while not stop[0]:
            k = b"w%09d" % n
            try:
                if c is None:
                    c = SYS[system](addrs[i], timeout=timeout)
                sent = time.time()
                c.put(k, value(k, size))
                out.write("%.6f %.6f\n" % (sent, time.time()))
                n += 1
            except Exception:
                if c is not None:
                    try:
                        c.close()
                    except Exception:
                        pass
                c = None
                i = (i + 1) % len(addrs)
                time.sleep(0.01)


def gaps(ackfile, killfile):
    sa = [tuple(map(float, x.split())) for x in open(ackfile) if x.strip()]
    acks = [a for _, a in sa]
    kills = [float(x) for x in open(killfile) if x.strip()]
    for j, k in enumerate(kills):
        end = kills[j + 1] if j + 1 < len(kills) else float("inf")
        # the first write sent after the leader was dead that got acknowledged
        first = [a for s, a in sa if s >= k and a < end]
        after = [a for a in acks if k < a < end]
        if not first:
            print("nan nan")
            continue
        before = [a for a in acks if a <= k]
        prev = before[-1] if before else k
        seg = [prev] + after
        gap = max(b - a for a, b in zip(seg, seg[1:]))
        print("%.3f %.3f" % (first[0] - k, gap))
    print("writes %d" % len(acks))


def main(a):
    system, cmd = a[1], a[2]
    if cmd == "seq":
        seq(system, a[3], int(a[4]), int(a[5]))
    elif cmd == "conc":
        addrs = a[3].split(",")
        if system == "geokv":
            conc_geokv(addrs, int(a[4]), int(a[5]), int(a[6]))
        else:
            conc_threads(system, addrs, int(a[4]), int(a[5]), int(a[6]),
                         float(a[7]) if len(a) > 7 else 0.0)
    elif cmd == "writer":
        writer(system, a[3].split(","), int(a[4]), float(a[5]), a[6])
    elif cmd == "gaps":
        gaps(a[3], a[4])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
