#!/usr/bin/env bash
# geokv-gateway against nginx (BENCH.md, "gateway keep-alive" and "gateway new-connection").
#
#   tests/bench/gateway.sh [--smoke] [--keys N] [--pairs N] [--seconds S] [--workers N]
#                          [--nginx-files N] [--gateway BIN] [--fixture BIN] [--build DIR]
#                          [--only keepalive,resumed,reconnect,full,p99,mixed]
#
# Both servers serve the same keys (100-byte values; the gateway from its LMDB store, nginx
# from one file per key with open_file_cache), the same ECDSA P-256 certificate, TLS 1.2 with
# ECDHE-ECDSA-AES128-GCM-SHA256 only, and the same worker count, on loopback. Runs alternate
# A B A B (gateway, nginx) and the figure is the median of the per-pair ratios, min-max beside
# it. Workloads:
#   1. keep-alive: wrk -t1 -c32, random keys (Lua): req/s, p99, server CPU per request
#   2. resumed:    openssl s_time -reuse (a new TCP connection per request, session resumed)
#   3. reconnect:  wrk with Connection: close, 32 connections: a new TCP connection per
#                  request; wrk keeps its TLS session across reconnects, so these handshakes
#                  are resumptions (the gateway's handshake counters, printed, show it)
#   4. full:       openssl s_time -new (a full handshake per request): conn/s, server CPU per
#                  handshake; and connect + full TLS + GET latency p50/p99 at 100 new
#                  connections/s (python client: one context, no resumption, 16 threads)
#   5. mixed:      1. and 100 new connections/s at once: keep-alive p99 while full
#                  handshakes run, and the new connections' p99
# Prints `metric <name> <value> <unit>` lines and a summary line. --smoke: 1,000 keys, one
# short pair per workload, for the test suite (figures meaningless, wiring checked).
# --keys 10000000: the gateway gets every key; nginx gets at most --nginx-files (default
# 1,000,000) files because 10M files would need ~40 GB of inodes/blocks here.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
keys=100000 pairs=3 secs=10 workers=1 smoke=0 nginx_files=1000000
gw="" fx="" build="" only=keepalive,resumed,reconnect,full,p99,mixed
while [ $# -gt 0 ]; do
	case $1 in
	--smoke) smoke=1 ;;
	--keys) keys=$2; shift ;;
	--pairs) pairs=$2; shift ;;
	--seconds) secs=$2; shift ;;
	--workers) workers=$2; shift ;;
	--nginx-files) nginx_files=$2; shift ;;
	--gateway) gw=$2; shift ;;
	--fixture) fx=$2; shift ;;
	--build) build=$2; shift ;;
	--only) only=$2; shift ;;
	-h|--help) sed -n '2,26p' "$0"; exit 0 ;;
	*) echo "gateway.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
if [ $smoke = 1 ]; then keys=1000 pairs=1 secs=1; fi
hs_secs=$(( secs > 5 ? 5 : secs ))

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
	sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
	echo "bench: installing ${need[*]}" >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "$gw" ] || [ -z "$fx" ]; then
	build=${build:-$root/build}
	if [ ! -x "$build/gateway/geokv-gateway" ] || [ ! -x "$build/tests/gateway/gw-fixture" ]; then
		[ -f "$build/build.ninja" ] || meson setup "$build" "$root" >/dev/null
		ninja -C "$build" gateway/geokv-gateway tests/gateway/gw-fixture >/dev/null
	fi
	gw=${gw:-$build/gateway/geokv-gateway}
	fx=${fx:-$build/tests/gateway/gw-fixture}
fi

tmp=$(mktemp -d /tmp/gw-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
	python3 -c '
import random, socket
for _ in range(200):
    p = random.randint(20000, 60000); s = socket.socket()
    try: s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError: s.close()'
}
wait_port() {
	for _ in $(seq 1 200); do
		python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench: port $1 never opened" >&2; return 1
}
# CPU ticks (utime+stime) of a process and its children threads/workers (by parent pid).
cpu_ticks() {
	python3 - "$@" <<'PY'
import os, sys
want = set(int(p) for p in sys.argv[1:])
tot = 0
for d in os.listdir("/proc"):
    if not d.isdigit(): continue
    try: f = open(f"/proc/{d}/stat").read()
    except OSError: continue
    rest = f[f.rindex(")") + 2:].split()
    pid, ppid = int(d), int(rest[1])
    if pid in want or ppid in want:
        tot += int(rest[11]) + int(rest[12])
print(tot)
PY
}
HZ=$(getconf CLK_TCK)

"$root/deploy/certs.sh" "$tmp/certs" >/dev/null
SUITE=ECDHE-ECDSA-AES128-GCM-SHA256

# ---- data --------------------------------------------------------------------------------
echo "bench: loading $keys keys" >&2
mkdir -p "$tmp/state" "$tmp/www/kv"
chmod 755 "$tmp" # nginx workers run as an unprivileged user
t0=$(date +%s.%N)
"$fx" load "$tmp/state" default "$keys" 100 >/dev/null
t1=$(date +%s.%N)
nfiles=$(( keys < nginx_files ? keys : nginx_files ))
python3 - "$tmp/www/kv" "$nfiles" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    # the same bytes gw-fixture writes: value[k] = 'a' + (i + k) % 26
    v = bytes(97 + (i + k) % 26 for k in range(100))
    with open(os.path.join(d, "k%d" % i), "wb") as f:
        f.write(v)
PY
echo "metric gateway.bench.load.keys_per_s $(python3 -c "print(round($keys/($t1-$t0)))") keys/s"

# ---- servers ------------------------------------------------------------------------------
GP=$(free_port)
"$gw" --data "$tmp/state" --listen "127.0.0.1:$GP" --cert "$tmp/certs/server.crt" \
	--key "$tmp/certs/server.key" --workers "$workers" --set tls.ciphersuites=$SUITE \
	--set gateway.metrics_on_public=true --set health.require_node=false --set limits.max_req_rate=0 --set gateway.max_conns=20000 \
	--log-level warn >"$tmp/gw.log" 2>&1 &
GWPID=$!; pids+=("$GWPID")

NP=$(free_port)
mkdir -p "$tmp/nginx/logs"
# open_file_cache keeps one fd per cached file: it must stay under the fd limit, which an
# unprivileged container cannot raise (20,000 here).
fdlim=$(ulimit -n)
ofc=$(( nfiles < fdlim - 3000 ? nfiles : fdlim - 3000 ))
echo "metric gateway.bench.nginx.open_file_cache $ofc files"
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes $workers;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 2048; }
http {
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    open_file_cache max=$ofc inactive=120s;
    open_file_cache_valid 120s;
    server {
        listen 127.0.0.1:$NP ssl;
        ssl_certificate $tmp/certs/server.crt;
        ssl_certificate_key $tmp/certs/server.key;
        ssl_protocols TLSv1.2;
        ssl_ciphers $SUITE;
        ssl_session_cache shared:SSL:50m;
        ssl_session_tickets on;
        location /kv/ {
            root $tmp/www;
            add_header Cache-Control no-store;
        }
    }
}
EOF
"$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' 2>"$tmp/nginx/stderr" &
NGPID=$!; pids+=("$NGPID")
wait_port "$GP"; wait_port "$NP"
for p in "$GP" "$NP"; do
	v=$(curl -sk "https://127.0.0.1:$p/kv/k7")
	[ "$v" = "$(python3 -c "print(''.join(chr(97+(7+k)%26) for k in range(100)))")" ] ||
		{ echo "bench: server on $p serves wrong value: $v" >&2; exit 1; }
done

# Random keys among what each server has: all keys for the gateway, the files for nginx.
for srv in gateway nginx; do
	n=$keys; [ $srv = nginx ] && n=$nfiles
	cat >"$tmp/random.$srv.lua" <<EOF
local n = $n
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  return wrk.format("GET", "/kv/k" .. math.random(0, n - 1))
end
EOF
	cat >"$tmp/close.$srv.lua" <<EOF
local n = $n
math.randomseed(os.time())
wrk.headers["Connection"] = "close"
request = function()
  return wrk.format("GET", "/kv/k" .. math.random(0, n - 1))
end
EOF
done

results=$tmp/results
: >"$results"
rec() { echo "$*" >>"$results"; } # workload server metric value

# wrk run: prints "rps p99_ms requests"
run_wrk() { # port script conns secs
	wrk -t1 -c"$3" -d"$4"s --latency -s "$2" "https://127.0.0.1:$1" 2>&1 | python3 -c '
import re, sys
t = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", t, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
req = int(re.search(r"(\d+) requests in", t).group(1))
err = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(rps, p99, req, err.group(1) if err else 0)'
}

server_pid() { [ "$1" = gateway ] && echo "$GWPID" || echo "$NGPID"; }
server_port() { [ "$1" = gateway ] && echo "$GP" || echo "$NP"; }

bench_wrk() { # workload script conns
	local wl=$1 script=$2 conns=$3 s
	for i in $(seq 1 "$pairs"); do
		for s in gateway nginx; do
			local pid port c0 c1 out
			pid=$(server_pid $s); port=$(server_port $s)
			c0=$(cpu_ticks "$pid")
			out=$(run_wrk "$port" "$script.$s.lua" "$conns" "$secs")
			c1=$(cpu_ticks "$pid")
			read -r rps p99 req errs <<<"$out"
			rec "$wl $s rps $rps"; rec "$wl $s p99 $p99"
			rec "$wl $s cpu_us $(python3 -c "print(($c1-$c0)/$HZ*1e6/max($req,1))")"
			[ "$errs" = 0 ] || echo "bench: $s $wl: $errs non-2xx answers" >&2
			echo "bench: $wl pair $i $s: $rps req/s p99 ${p99} ms" >&2
		done
	done
}

bench_stime() { # workload flag(-reuse|-new)
	local wl=$1 flag=$2 s
	for i in $(seq 1 "$pairs"); do
		for s in gateway nginx; do
			local pid port c0 c1 out n t
			pid=$(server_pid $s); port=$(server_port $s)
			c0=$(cpu_ticks "$pid")
			out=$(openssl s_time -connect "127.0.0.1:$port" -www /kv/k1 -cipher $SUITE \
				"$flag" -time "$hs_secs" 2>&1 | grep -E 'connections in [0-9.]+ real' | tail -1)
			c1=$(cpu_ticks "$pid")
			n=$(awk '{print $1}' <<<"$out"); t=$(awk '{print $4}' <<<"$out")
			rec "$wl $s cps $(python3 -c "print($n/$t)")"
			rec "$wl $s cpu_us $(python3 -c "print(($c1-$c0)/$HZ*1e6/max($n,1))")"
			echo "bench: $wl pair $i $s: $n conns in ${t}s" >&2
		done
	done
}

# connect + full TLS handshake + GET at 100 new connections/s, latency of each.
# The client shares the 2 cores with the servers, so it is kept light: one TLS context
# (Python never offers a session it was not given, so every handshake is still full: the
# gateway's counters below show it) and a fixed set of threads fed on schedule, instead of
# a thread and an SSLContext per connection; it reports its own CPU and how late it started
# connections, so a run where the client itself was starved can be told apart. Latency is
# measured from the actual start of each connection; p99 over `secs` seconds (1,000
# connections at --seconds 10, so the p99 is not the 5th-worst of 500).
# Prints "p99 p50 errors late_p99 client_cpu_pct".
cat >"$tmp/newconn.py" <<'PY'
import queue, random, resource, socket, ssl, sys, threading, time
port, secs, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
lat, late, errs = [], [], [0]
lock = threading.Lock()
q = queue.Queue()
def one(due):
    t = time.perf_counter()
    try:
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 5))
        s.sendall(b"GET /kv/k%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % random.randrange(n))
        d = b""
        while b"\r\n\r\n" not in d or len(d.split(b"\r\n\r\n", 1)[1]) < 100:
            b = s.recv(4096)
            if not b: break
            d += b
        s.close()
        with lock: lat.append((time.perf_counter() - t) * 1000); late.append((t - due) * 1000)
    except Exception:
        with lock: errs[0] += 1
def worker():
    while True:
        due = q.get()
        if due is None: return
        one(due)
th = [threading.Thread(target=worker) for _ in range(16)]
for x in th: x.start()
r0 = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter(); k = 0
while time.perf_counter() - start < secs:
    due = start + k / 100.0
    now = time.perf_counter()
    if due > now: time.sleep(due - now)
    q.put(due); k += 1
for _ in th: q.put(None)
for x in th: x.join()
r1 = resource.getrusage(resource.RUSAGE_SELF)
wall = time.perf_counter() - start
cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / wall * 100
lat.sort(); late.sort()
pct = lambda a, q: a[max(int(len(a) * q) - 1, 0)] if a else float("nan")
print("%.3f %.3f %d %.3f %.1f" % (pct(lat, 0.99), pct(lat, 0.5), errs[0], pct(late, 0.99), cpu))
PY

bench_p99() { # 100 new connections/s alone
	local s
	for i in $(seq 1 "$pairs"); do
		for s in gateway nginx; do
			local port; port=$(server_port $s)
			p=$(python3 "$tmp/newconn.py" "$port" "$secs" "$nfiles")
			read -r p99 p50 errs late99 ccpu <<<"$p"
			rec "newconn100 $s p99 $p99"; rec "newconn100 $s p50 $p50"
			rec "newconn100 $s client_late_p99 $late99"; rec "newconn100 $s client_cpu_pct $ccpu"
			echo "bench: 100 conn/s pair $i $s: p50 ${p50} ms p99 ${p99} ms errors $errs (client: ${ccpu}% CPU, started late by ${late99} ms at p99)" >&2
		done
	done
}

# Mixed: the keep-alive load (wrk, 32 connections) while 100 new connections/s make full
# handshakes on the same server. This is where a handshake on the event loop hurts: every
# keep-alive connection of that worker waits for it.
bench_mixed() {
	local s
	for i in $(seq 1 "$pairs"); do
		for s in gateway nginx; do
			local port out p; port=$(server_port $s)
			python3 "$tmp/newconn.py" "$port" "$secs" "$nfiles" >"$tmp/mixed.nc" &
			local ncpid=$!
			out=$(run_wrk "$port" "$tmp/random.$s.lua" 32 "$secs")
			wait $ncpid
			p=$(cat "$tmp/mixed.nc")
			read -r rps kp99 req errs <<<"$out"
			read -r p99 p50 nerrs late99 ccpu <<<"$p"
			rec "mixed $s rps $rps"; rec "mixed $s p99 $kp99"; rec "mixed $s newconn_p99 $p99"
			echo "bench: mixed pair $i $s: keep-alive $rps req/s p99 ${kp99} ms; new connections p99 ${p99} ms errors $nerrs" >&2
		done
	done
}

# The machines are shared: the load beside the figures says how much to trust them.
echo "metric gateway.bench.loadavg1.start $(cut -d' ' -f1 /proc/loadavg) load"
want() { [[ ",$only," == *",$1,"* ]]; }
want keepalive && bench_wrk keepalive "$tmp/random" 32
want resumed && bench_stime resumed -reuse
want reconnect && bench_wrk reconnect "$tmp/close" 32
want full && bench_stime full_stime -new
want p99 && bench_p99
want mixed && bench_mixed

# What kind of handshakes each workload really made (wrk reuses its TLS session when it
# reconnects, so its Connection: close runs are resumptions, not full handshakes).
curl -sk "https://127.0.0.1:$GP/metrics" | awk '/^geokv_gateway_tls_handshakes_total/ {
	match($0, /kind="[a-z]+"/); k = substr($0, RSTART + 6, RLENGTH - 7);
	print "metric gateway.bench.tls_handshakes." k " " $2 " count" }'

echo "metric gateway.bench.loadavg1.end $(cut -d' ' -f1 /proc/loadavg) load"

# ---- figures ------------------------------------------------------------------------------
python3 - "$results" "$keys" "$nfiles" "$workers" "$smoke" <<'PY'
import statistics as st, sys
from collections import defaultdict
res = defaultdict(list)
for line in open(sys.argv[1]):
    wl, srv, m, v = line.split()
    res[(wl, srv, m)].append(float(v))
keys, nfiles, workers, smoke = sys.argv[2:6]
def ratios(wl, m, invert=False):
    g, n = res[(wl, "gateway", m)], res[(wl, "nginx", m)]
    r = [(b / a if invert else a / b) for a, b in zip(g, n) if a > 0 and b > 0]
    return r
def out(name, v, unit):
    print(f"metric {name} {v:.4g} {unit}")
def pair(wl, m, unit, label, invert=False, lower_better=False):
    for s in ("gateway", "nginx"):
        if res[(wl, s, m)]:
            out(f"gateway.{label}.{s}.{m}", st.median(res[(wl, s, m)]), unit)
    r = ratios(wl, m)
    if r:
        out(f"gateway.{label}.{m}.ratio_vs_nginx", st.median(r), "x")
        out(f"gateway.{label}.{m}.ratio_vs_nginx_min", min(r), "x")
        out(f"gateway.{label}.{m}.ratio_vs_nginx_max", max(r), "x")
    return st.median(r) if r else float("nan")
ka = pair("keepalive", "rps", "req/s", "keepalive")
kp = pair("keepalive", "p99", "ms", "keepalive")
pair("keepalive", "cpu_us", "us/req", "keepalive")
rs = pair("resumed", "cps", "conn/s", "resumed")
pair("resumed", "cpu_us", "us/conn", "resumed")
fu = pair("reconnect", "rps", "conn/s", "reconnect_wrk")
pair("reconnect", "p99", "ms", "reconnect_wrk")
pair("reconnect", "cpu_us", "us/conn", "reconnect_wrk")
fs = pair("full_stime", "cps", "conn/s", "full_stime")
pair("full_stime", "cpu_us", "us/handshake", "full_stime")
pair("mixed", "rps", "req/s", "mixed_keepalive")
mk = pair("mixed", "p99", "ms", "mixed_keepalive")
pair("mixed", "newconn_p99", "ms", "mixed_newconn100")
pair("newconn100", "p50", "ms", "newconn100")
pair("newconn100", "client_late_p99", "ms", "newconn100")
pair("newconn100", "client_cpu_pct", "%", "newconn100")
p99 = pair("newconn100", "p99", "ms", "newconn100")
gp99 = st.median(res[("newconn100", "gateway", "p99")]) if res[("newconn100", "gateway", "p99")] else float("nan")
def nz(v): return v if v == v else 0.0
print(f"summary: gateway/nginx keys={keys} (nginx files={nfiles}) workers={workers}"
      f"{' SMOKE' if smoke == '1' else ''}: keep-alive {ka:.2f}x req/s (target >=1.25), "
      f"p99 {kp:.2f}x (lower is better), resumed {rs:.2f}x (target >=1.0), "
      f"reconnect (wrk, resumed) {fu:.2f}x, full handshake {fs:.2f}x (s_time), "
      f"connect+TLS+GET p99 at 100/s {gp99:.2f} ms (requirement < 10 ms), "
      f"mixed keep-alive p99 {mk:.2f}x")
PY
