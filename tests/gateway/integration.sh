#!/usr/bin/env bash
# Integration tests for geokv-gateway: the real binary on loopback, real clients (curl,
# openssl s_client, python sockets), a store written by gw-fixture. Emits TAP.
#
#   integration.sh GATEWAY FIXTURE CERTS_SH
#
# Every process started here is stopped by pid on exit, also on failure.
set -uo pipefail

GW=${1:?gateway binary}
FX=${2:?gw-fixture binary}
CERTS=${3:?deploy/certs.sh}
tmp=$(mktemp -d /tmp/gw-it.XXXXXX)
pids=()
n=0
fails=0

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

ok() { n=$((n+1)); echo "ok $n - $1"; }
nok() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $1"; [ $# -gt 1 ] && echo "# $2"; }
t_term() { # name pid: not through check(), whose subshell cannot wait for our children
	kill -TERM "$2"
	wait "$2"; local rc=$?
	if [ $rc = 0 ]; then ok "$1"; else nok "$1" "exit $rc"; fi
}
check() { # name, command...
	local name=$1; shift
	if out=$("$@" 2>&1); then ok "$name"; else nok "$name" "$(echo "$out" | tail -n 5 | tr '\n' '|')"; fi
}

free_port() {
	python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 60000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        s.close()
PY
}

wait_port() { # port
	for _ in $(seq 1 100); do
		python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

"$CERTS" "$tmp/certs" >/dev/null || { echo "Bail out! certs.sh failed"; exit 1; }
data=$tmp/state
mkdir -p "$data"
"$FX" load "$data" default 100 100 >/dev/null || { echo "Bail out! fixture load failed"; exit 1; }
"$FX" load "$data" docs 3 20 "text/plain; charset=utf-8" >/dev/null
"$FX" put "$data" default hello world >/dev/null
"$FX" put "$data" default "a/b" slash >/dev/null
"$FX" put "$data" default gone soon >/dev/null
"$FX" del "$data" default gone >/dev/null

TP=$(free_port)
MP=$(free_port) # /metrics on its own plain listener (off the public port by default)
"$GW" --data "$data" --listen "127.0.0.1:$TP" --cert "$tmp/certs/server.crt" \
	--key "$tmp/certs/server.key" --workers 2 --metrics-listen "127.0.0.1:$MP" \
	--set health.max_contact_age_ms=400 --set kv.min_rev_max_wait_ms=5000 \
	--set limits.handshake_timeout_ms=1000 >"$tmp/gw-tls.log" 2>&1 &
GWPID=$!
pids+=("$GWPID")
wait_port "$TP" || { cat "$tmp/gw-tls.log"; echo "Bail out! gateway (tls) did not start"; exit 1; }
U="https://127.0.0.1:$TP"
C=(curl -s --cacert "$tmp/certs/ca.crt" --max-time 10)

echo "# tls gateway on $TP"

# ---- /kv over TLS ------------------------------------------------------------------------
t_get() {
	local h; h=$("${C[@]}" -D - -o "$tmp/body" "$U/kv/hello") || return 1
	grep -q '^HTTP/1.1 200' <<<"$h" && grep -qi '^etag: "[0-9]*"' <<<"$h" &&
	grep -qi '^x-geokv-revision: [0-9]' <<<"$h" &&
	grep -qi '^content-type: application/octet-stream' <<<"$h" &&
	grep -qi '^cache-control: no-store' <<<"$h" && [ "$(cat "$tmp/body")" = world ]
}
check "GET /kv/hello: 200, value, ETag, X-Geokv-Revision, Content-Type, Cache-Control" t_get
t_head() {
	local h; h=$("${C[@]}" -I "$U/kv/k1") || return 1
	grep -q '^HTTP/1.1 200' <<<"$h" && grep -qi '^content-length: 100' <<<"$h"
}
check "HEAD /kv/k1: 200 with Content-Length, no body" t_head
t_304() {
	local etag code
	etag=$("${C[@]}" -D - -o /dev/null "$U/kv/hello" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
	code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "If-None-Match: W/\"1\", $etag" "$U/kv/hello")
	[ "$code" = 304 ] || { echo "got $code for $etag"; return 1; }
	code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'If-None-Match: "1"' "$U/kv/hello")
	[ "$code" = 200 ]
}
check "If-None-Match: 304 on match (weak, in a list), 200 otherwise" t_304
code() { "${C[@]}" -o /dev/null -w '%{http_code}' "$@"; }
check "404 for an absent key" test "$(code "$U/kv/nokey")" = 404
check "404 for a deleted key" test "$(code "$U/kv/gone")" = 404
check "percent-decoded key: /kv/a%2Fb and /kv/a/b" \
	test "$("${C[@]}" "$U/kv/a%2Fb")$("${C[@]}" "$U/kv/a/b")" = slashslash
t_bucket() {
	local h; h=$("${C[@]}" -D - -o "$tmp/body" "$U/kv/k0?bucket=docs") || return 1
	grep -qi '^content-type: text/plain; charset=utf-8' <<<"$h" && [ "$(wc -c <"$tmp/body")" = 20 ]
}
check "?bucket=docs: other bucket, its content type" t_bucket
check "404 for an unknown bucket" test "$(code "$U/kv/k0?bucket=nobucket")" = 404
check "400 for an invalid key (leading dot)" test "$(code "$U/kv/.bad")" = 400
check "400 for an invalid key (bad char %20)" test "$(code "$U/kv/a%20b")" = 400
check "400 for a bad escape" test "$(code "$U/kv/a%zz")" = 400
check "400 for an invalid bucket name" test "$(code "$U/kv/k0?bucket=a.b")" = 400
check "400 for a bad min_rev" test "$(code "$U/kv/k0?min_rev=x")" = 400
t_405() {
	local h; h=$("${C[@]}" -X POST -D - -o /dev/null "$U/kv/k1") || return 1
	grep -q '^HTTP/1.1 405' <<<"$h" && grep -qi '^allow: GET, HEAD' <<<"$h"
}
check "405 with Allow for POST" t_405
check "404 for an unknown path" test "$(code "$U/nothing")" = 404
check "414 for a long URI" test "$(code "$U/kv/$(head -c 5000 /dev/zero | tr '\0' a)")" = 414
check "431 for a huge header" test "$(code -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' a)" "$U/kv/k1")" = 431
t_431n() {
	local args=() i
	for i in $(seq 1 70); do args+=(-H "X-H$i: v"); done
	test "$(code "${args[@]}" "$U/kv/k1")" = 431
}
check "431 for too many headers" t_431n
check "413 for a body over the limit" test "$(code -X GET --data-binary "@$GW" "$U/kv/k1")" = 413
t_keepalive() {
	local out; out=$("${C[@]}" -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}\n' \
		"$U/kv/k1" "$U/kv/k2" "$U/kv/k3")
	[ "$(echo "$out" | tr '\n' ' ')" = "1 0 0 " ] || { echo "connects: $out"; return 1; }
}
check "keep-alive: three requests on one connection" t_keepalive

# Pipelining over TLS: 20 requests in one write, 20 answers in order.
t_pipeline() {
	python3 - "$TP" <<'PY'
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5))
reqs = b"".join(b"GET /kv/k%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(20))
s.sendall(reqs + b"GET /kv/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b: break
    data += b
parts = data.split(b"HTTP/1.1 200 OK")
assert len(parts) == 22, len(parts)
vals = [p.split(b"\r\n\r\n", 1)[1][:100] for p in parts[1:21]]
for i, v in enumerate(vals):
    exp = bytes((ord('a') + (i + k) % 26) for k in range(100))
    assert v == exp, (i, v[:10])
assert parts[21].split(b"\r\n\r\n", 1)[1] == b"world"
PY
}
check "pipelining: 21 requests in one TLS write, answers in order, close honoured" t_pipeline

t_resume() {
	rm -f "$tmp/sess"
	local a b
	a=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$TP" -tls1_2 -sess_out "$tmp/sess" 2>/dev/null | grep -E '^(New|Reused),')
	b=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$TP" -tls1_2 -sess_in "$tmp/sess" 2>/dev/null | grep -E '^(New|Reused),')
	grep -q '^New, TLSv1.2' <<<"$a" && grep -q '^Reused, TLSv1.2' <<<"$b" || { echo "$a / $b"; return 1; }
}
check "resumption: openssl s_client -sess_out/-sess_in says Reused" t_resume
t_resume_noticket() {
	rm -f "$tmp/sess2"
	echo | timeout 10 openssl s_client -connect "127.0.0.1:$TP" -tls1_2 -no_ticket -sess_out "$tmp/sess2" >/dev/null 2>&1
	echo | timeout 10 openssl s_client -connect "127.0.0.1:$TP" -tls1_2 -no_ticket -sess_in "$tmp/sess2" 2>/dev/null | grep -q '^Reused,'
}
check "resumption by session id (cache) without tickets" t_resume_noticket
t_alpn() {
	echo | timeout 10 openssl s_client -connect "127.0.0.1:$TP" -alpn h2,http/1.1 2>/dev/null | grep -q 'ALPN protocol: http/1.1'
}
check "ALPN selects http/1.1" t_alpn
t_suites() {
	local s
	for s in ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305; do
		echo | timeout 10 openssl s_client -connect "127.0.0.1:$TP" -tls1_2 -cipher "$s" 2>/dev/null | grep -q "Cipher is $s" || { echo "$s"; return 1; }
	done
	! echo | timeout 10 openssl s_client -connect "127.0.0.1:$TP" -tls1_1 2>/dev/null | grep -q 'Cipher is ECDHE'
}
check "suites: AES-GCM and ChaCha20-Poly1305 accepted, TLS 1.1 refused" t_suites

# ---- min_rev -----------------------------------------------------------------------------
t_minrev() {
	local rev next start end body
	rev=$("$FX" rev "$data"); next=$((rev + 1))
	start=$(date +%s%N)
	( "${C[@]}" -D "$tmp/mr.h" -o "$tmp/mr.b" "$U/kv/fresh?min_rev=$next&wait_ms=4000" ) &
	local cp=$!
	sleep 0.3
	"$FX" put "$data" default fresh value1 >/dev/null
	wait $cp
	end=$(date +%s%N)
	body=$(cat "$tmp/mr.b")
	[ "$body" = value1 ] || { echo "body=$body"; cat "$tmp/mr.h"; return 1; }
	[ $(( (end - start) / 1000000 )) -lt 3000 ] || { echo "took too long"; return 1; }
}
check "?min_rev: waits for the write, answers as soon as it is applied" t_minrev
t_minrev_504() {
	local rev h; rev=$("$FX" rev "$data")
	h=$("${C[@]}" -D - -o /dev/null "$U/kv/hello?min_rev=$((rev + 100))&wait_ms=200")
	grep -q '^HTTP/1.1 504' <<<"$h" && grep -qi "^x-geokv-revision: $rev" <<<"$h"
}
check "?min_rev ahead of the node: 504 with the node's revision after wait_ms" t_minrev_504
t_minrev_503() {
	local rev; rev=$("$FX" rev "$data")
	test "$(code "$U/kv/hello?min_rev=$((rev + 100))&wait_ms=0")" = 503
}
check "?min_rev with wait_ms=0: 503 at once" t_minrev_503
check "?min_rev already reached: 200" test "$(code "$U/kv/hello?min_rev=1")" = 200

# ---- health ------------------------------------------------------------------------------
hz() { "${C[@]}" -o "$tmp/hz" -w '%{http_code}' "$U/healthz"; }
t_hz_nonode() { [ "$(hz)" = 503 ] && grep -q '"reason":"no node status"' "$tmp/hz"; }
check "/healthz 503 without a node status page" t_hz_nonode
"$FX" node "$data" leaf >/dev/null 2>&1 &
NODEPID=$!
pids+=("$NODEPID")
sleep 1.3 # the gateway maps the page within a second
t_hz_ok() { [ "$(hz)" = 200 ] && grep -q '"status":"ok","role":"leaf"' "$tmp/hz" || { cat "$tmp/hz"; return 1; }; }
check "/healthz 200 when the feed is connected and fresh" t_hz_ok
# best of five: on a loaded 2-core machine one answer may wait for a core
t_hz_fast() {
	local t i
	for i in 1 2 3 4 5; do
		t=$("${C[@]}" -o /dev/null -w '%{time_starttransfer} %{time_appconnect}' "$U/healthz")
		python3 -c "import sys; a,b=map(float,'$t'.split()); sys.exit(0 if a-b < 0.005 else 1)" && return 0
	done
	echo "$t"; return 1
}
check "/healthz answers within milliseconds of the request" t_hz_fast
kill -USR1 "$NODEPID"
sleep 0.2
t_hz_down() { [ "$(hz)" = 503 ] && grep -q '"reason":"feed disconnected"' "$tmp/hz" || { cat "$tmp/hz"; return 1; }; }
check "/healthz 503 when the feed stops" t_hz_down
kill -USR2 "$NODEPID"
sleep 0.2
check "/healthz 200 again when the feed returns" t_hz_ok
kill -STOP "$NODEPID"
sleep 0.7
t_hz_stale() { [ "$(hz)" = 503 ] && grep -q '"reason":"no recent contact"' "$tmp/hz" || { cat "$tmp/hz"; return 1; }; }
check "/healthz 503 when the node stops publishing (no recent contact)" t_hz_stale
kill -CONT "$NODEPID"
sleep 0.2
check "/healthz 200 when it publishes again" t_hz_ok
check "/readyz 200 when caught up with data" test "$(code "$U/readyz")" = 200
check "/livez 200" test "$(code "$U/livez")" = 200
t_promtool() {
	curl -s --max-time 10 "http://127.0.0.1:$MP/metrics" >"$tmp/metrics" || return 1
	grep -q 'geokv_gateway_requests_total{route="kv",status="200"}' "$tmp/metrics" &&
	grep -q 'geokv_gateway_tls_handshakes_total{kind="resumed"} [1-9]' "$tmp/metrics" &&
	grep -q '^geokv_node_revision [1-9]' "$tmp/metrics" &&
	grep -q '^geokv_node_lag_entries 0' "$tmp/metrics" || { echo "content"; return 1; }
	if command -v promtool >/dev/null; then promtool check metrics <"$tmp/metrics"; fi
}
check "/metrics (metrics listener): requests, handshakes, node revision/lag; promtool check metrics accepts it" t_promtool
check "/metrics is not served on the public HTTPS port by default" test "$(code "$U/metrics")" = 404
kill "$NODEPID"; wait "$NODEPID" 2>/dev/null
sleep 0.2
t_hz_stopped() { [ "$(hz)" = 503 ] && grep -q '"reason":"node stopped"' "$tmp/hz" || { cat "$tmp/hz"; return 1; }; }
check "/healthz 503 after the node closes cleanly" t_hz_stopped

# ---- slow and broken clients over TLS -----------------------------------------------------
t_hs_timeout() {
	python3 - "$TP" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
t = time.time()
s.settimeout(5)
assert s.recv(10) == b""           # closed by the server, nothing sent
assert 0.8 < time.time() - t < 3, time.time() - t
PY
}
check "TLS client that never says hello is cut off after handshake_timeout" t_hs_timeout
t_garbage_tls() {
	python3 - "$TP" <<'PY'
import os, socket, sys
for _ in range(20):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
    s.sendall(os.urandom(3000))
    s.settimeout(5)
    try:
        while s.recv(4096): pass
    except ConnectionResetError:
        pass
PY
	test "$(code "$U/livez")" = 200
}
check "random bytes instead of TLS: connection closed, gateway unharmed" t_garbage_tls

# ---- SIGHUP reload ------------------------------------------------------------------------
t_reload() {
	"$CERTS" "$tmp/certs2" >/dev/null || return 1
	local before after
	before=$(echo | openssl s_client -connect "127.0.0.1:$TP" 2>/dev/null | openssl x509 -noout -fingerprint)
	python3 - "$TP" "$GWPID" "$tmp" <<'PY' || return 1
import os, shutil, signal, socket, ssl, sys, time
port, pid, tmp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 5))
s.sendall(b"GET /kv/k1 HTTP/1.1\r\nHost: x\r\n\r\n"); assert b"200 OK" in s.recv(4096)
for f in ("server.crt", "server.key"):
    shutil.copy(os.path.join(tmp, "certs2", f), os.path.join(tmp, "certs", f + ".new"))
    os.rename(os.path.join(tmp, "certs", f + ".new"), os.path.join(tmp, "certs", f))
os.kill(pid, signal.SIGHUP)
time.sleep(0.3)
s.sendall(b"GET /kv/k2 HTTP/1.1\r\nHost: x\r\n\r\n"); assert b"200 OK" in s.recv(4096), "old connection dropped"
PY
	after=$(echo | openssl s_client -connect "127.0.0.1:$TP" 2>/dev/null | openssl x509 -noout -fingerprint)
	[ -n "$after" ] && [ "$before" != "$after" ] || { echo "cert unchanged: $after"; return 1; }
	grep -q 'certificates reloaded' "$tmp/gw-tls.log"
}
check "SIGHUP reloads the certificate; open connections keep working" t_reload

# ---- full handshakes on the pool: they must not stall established connections -------------
# A third gateway, one worker, whose pool steps sleep GEOKV_GW_TEST_HS_DELAY_MS first (a test
# hook), so a full handshake is slow enough to observe without timing the machine.
HP=$(free_port)
GEOKV_GW_TEST_HS_DELAY_MS=400 "$GW" --data "$data" --listen "127.0.0.1:$HP" \
	--cert "$tmp/certs/server.crt" --key "$tmp/certs/server.key" --workers 1 \
	--set health.require_node=false --set limits.handshake_timeout_ms=2500 \
	--set tls.handshake_threads=2 --metrics-on-public >"$tmp/gw-hs.log" 2>&1 &
HSPID=$!
pids+=("$HSPID")
wait_port "$HP" || { cat "$tmp/gw-hs.log"; echo "Bail out! gateway (handshake pool) did not start"; exit 1; }
cat >"$tmp/hs.py" <<'PY'
import os, select, socket, ssl, sys, threading, time
port = int(sys.argv[1])
def ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
    c.maximum_version = ssl.TLSVersion.TLSv1_2
    return c
def keepalive():
    s = ctx().wrap_socket(socket.create_connection(("127.0.0.1", port), 5))
    s.settimeout(10)
    return s
def get(s, key=b"hello"):
    s.sendall(b"GET /kv/" + key + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    d = b""
    while b"\r\n\r\n" not in d or not d.endswith(b"world"):
        b = s.recv(4096)
        assert b, "closed"
        d += b
    assert d.startswith(b"HTTP/1.1 200"), d[:40]
def hello(n):
    """n raw TCP connections, each with a ClientHello (fresh context: a full handshake) sent."""
    out = []
    for _ in range(n):
        i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx().wrap_bio(i, o)
        try: obj.do_handshake()
        except ssl.SSLWantReadError: pass
        s = socket.create_connection(("127.0.0.1", port), 5)
        s.sendall(o.read())
        out.append(s)
    return out
def first_bytes(socks, timeout):
    """Wait until every socket has answered something (its ServerHello flight) or closed."""
    left, end = set(socks), time.time() + timeout
    while left:
        r, _, _ = select.select(list(left), [], [], max(0.0, end - time.time()))
        if not r:
            break
        for s in r:
            s.recv(65536); left.discard(s)
    return len(socks) - len(left)
PY
t_hs_no_stall() {
	python3 - "$HP" "$tmp/hs.py" <<'PY'
import sys, time
exec(open(sys.argv[2]).read())
k = keepalive(); get(k)
hs = hello(3)           # three full handshakes now sleep on the pool (400 ms each)
time.sleep(0.05)
t = time.time()
for _ in range(20):     # the established connection keeps being served meanwhile
    get(k)
served = time.time() - t
done = first_bytes(hs, 0.0)
assert done == 0, "handshakes finished before the GETs: %d" % done
assert first_bytes(hs, 5) == 3, "handshakes never finished"
print("20 GETs in %.1f ms while 3 full handshakes were in flight" % (served * 1000))
PY
}
check "a slow full handshake does not delay GETs on an established connection (1 worker)" t_hs_no_stall
t_hs_complete() {
	python3 - "$HP" "$tmp/hs.py" <<'PY'
import sys, threading
exec(open(sys.argv[2]).read())
errs = []
def one():
    try:
        s = keepalive(); get(s); s.close()
    except Exception as e:
        errs.append(repr(e))
th = [threading.Thread(target=one) for _ in range(2)]
for x in th: x.start()
for x in th: x.join()
assert not errs, errs
PY
	local m; m=$("${C[@]}" -k "https://127.0.0.1:$HP/metrics") || return 1
	grep -q 'geokv_gateway_tls_handshakes_total{kind="full"} [1-9]' <<<"$m"
}
check "full handshakes completed on the pool serve GETs, counted as full" t_hs_complete
t_hs_close_in_work() {
	python3 - "$HP" "$tmp/hs.py" <<'PY'
import socket, struct, sys, time
exec(open(sys.argv[2]).read())
hs = hello(8)
time.sleep(0.1)         # their steps are sleeping on the pool now: reset them all
for s in hs:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); s.close()
time.sleep(2.0)         # the steps return to connections whose clients are gone
k = keepalive(); get(k)
PY
}
check "clients resetting during a handshake step on the pool: gateway unharmed" t_hs_close_in_work
t_hs_timeout_in_work() {
	# handshake_timeout (2.5 s) expires while steps (0.4 s each, 2 at a time) run or queue:
	# the loop closes those connections; their structs wait for the step to return.
	python3 - "$HP" "$tmp/hs.py" <<'PY'
import sys, time
exec(open(sys.argv[2]).read())
hs = hello(16)          # 16 steps / 2 threads x 0.4 s: the last ones run past the deadline
time.sleep(4)
k = keepalive(); get(k)
PY
	local m; m=$("${C[@]}" -k "https://127.0.0.1:$HP/metrics") || return 1
	grep -q 'geokv_gateway_timeouts_total{phase="handshake"} [1-9]' <<<"$m"
}
check "handshake timeout while steps run on the pool: closed, no leak, still serving" t_hs_timeout_in_work
t_hs_reload() {
	"$CERTS" "$tmp/certs3" >/dev/null || return 1
	cp "$tmp/certs/server.crt" "$tmp/hs-old.crt"
	python3 - "$HP" "$tmp/hs.py" "$HSPID" "$tmp" <<'PY'
import hashlib, os, shutil, signal, ssl, sys, threading, time
exec(open(sys.argv[2]).read())
pid, tmp = int(sys.argv[3]), sys.argv[4]
res = {}
def one(i):
    try:
        s = keepalive(); res[i] = hashlib.sha256(s.getpeercert(True)).hexdigest(); get(s); s.close()
    except Exception as e:
        res[i] = repr(e)
th = [threading.Thread(target=one, args=(i,)) for i in range(2)]
for x in th: x.start()
time.sleep(0.15)        # their key exchanges are on the pool: reload under them
for f in ("server.crt", "server.key"):
    shutil.copy(os.path.join(tmp, "certs3", f), os.path.join(tmp, "certs", f + ".new"))
    os.rename(os.path.join(tmp, "certs", f + ".new"), os.path.join(tmp, "certs", f))
os.kill(pid, signal.SIGHUP)
for x in th: x.join()
old = hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(os.path.join(tmp, "hs-old.crt")).read().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")).hexdigest()
assert all(v == old for v in res.values()), res
time.sleep(0.2)
s = keepalive(); new = hashlib.sha256(s.getpeercert(True)).hexdigest(); get(s)
assert new != old, "new connections still get the old certificate"
PY
}
check "SIGHUP during handshakes on the pool: they finish with the old pair, new ones get the new" t_hs_reload
t_burst_fair() {
	# One connection pipelines 3,000 GETs in one go; another sends one GET right after. The
	# worker answers at most a burst of requests per connection before serving the others,
	# so the second is answered long before the first one's 3,000 (all still answered, in
	# order). Without the cap the loop answered all 3,000 (~30 ms) first.
	python3 - "$HP" "$tmp/hs.py" "$HSPID" <<'PY'
import os, select, signal, socket, ssl, sys, time
exec(open(sys.argv[2]).read())
pid = int(sys.argv[3])
# `a` encrypts its 3,000 requests into memory first and sends them in one write, so they
# reach the server together (a TLS socket would trickle them out as it encrypts).
# A send buffer large enough for all of it: else sendall returns only once the server has
# read (and answered) most of it, and `b` would ask too late to show anything.
sa = socket.socket()
sa.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
sa.connect(("127.0.0.1", port))
i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
ta = ctx().wrap_bio(i, o)
while True:
    try:
        ta.do_handshake(); break
    except ssl.SSLWantReadError:
        sa.sendall(o.read()); d = sa.recv(65536); assert d; i.write(d)
sa.sendall(o.read())
b = keepalive()
ta.write(b"GET /kv/hello HTTP/1.1\r\nHost: x\r\n\r\n" * 3000)
# Both arrive while the gateway is stopped, so its loop finds them together (a's first):
# how many of a's answers go out before b's is then up to the gateway alone.
os.kill(pid, signal.SIGSTOP)
try:
    sa.sendall(o.read())
    b.sendall(b"GET /kv/hello HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
finally:
    os.kill(pid, signal.SIGCONT)
# One thread drains both, `b` first whenever it is readable, and notes how many answers
# `a` had when `b` got its own (draining `a` keeps back-pressure from pausing it).
sa.setblocking(False); b.setblocking(False)
got_a, got_b, before = b"", b"", None
while got_a.count(b"HTTP/1.1 200") < 3000 or not got_a.endswith(b"world"):
    r, _, _ = select.select([sa, b] if before is None else [sa], [], [], 10)
    assert r, "stalled"
    if b in r:
        try:
            while True: got_b += b.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        if got_b.endswith(b"world"):
            before = got_a.count(b"HTTP/1.1 200")
        continue
    d = sa.recv(16384); assert d, "closed"; i.write(d)
    try:
        while True: got_a += ta.read(1 << 20)
    except ssl.SSLWantReadError:
        pass
assert got_a.count(b"HTTP/1.1 200") == 3000 and before is not None
assert before < 500, "the other connection waited for %d pipelined answers" % before
print("other connection answered after %d of 3000 pipelined answers" % before)
PY
}
check "a client pipelining 3,000 requests does not hold the loop (burst cap, 1 worker)" t_burst_fair

# SIGTERM while steps are in flight: the worker waits for them, then exits 0 (not through
# check(), whose subshell cannot wait for our children).
python3 - "$HP" "$tmp/hs.py" <<'PY' &
import sys, time
exec(open(sys.argv[2]).read())
hs = hello(6)
time.sleep(3)
PY
hcl=$!
sleep 0.5
t_term "SIGTERM during handshake steps on the pool: exits 0" "$HSPID"
wait "$hcl" 2>/dev/null

# ---- plain-HTTP gateway with tight limits: defences ---------------------------------------
PP=$(free_port)
"$GW" --data "$data" --listen "127.0.0.1:$PP" --plain --workers 1 \
	--set health.require_node=false --set limits.max_req_rate=50 \
	--set limits.header_timeout_ms=800 --set limits.idle_timeout_ms=1500 \
	--set gateway.max_conns=8 >"$tmp/gw-plain.log" 2>&1 &
PLPID=$!
pids+=("$PLPID")
wait_port "$PP" || { cat "$tmp/gw-plain.log"; echo "Bail out! gateway (plain) did not start"; exit 1; }
echo "# plain gateway on $PP"

t_plain() { [ "$(curl -s "http://127.0.0.1:$PP/kv/hello")" = world ]; }
check "plain HTTP when configured" t_plain
py() { python3 - "$PP" "$@"; }
t_slowloris() {
	py <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET /kv/k1 HTTP/1.1\r\nHost: x\r\n")
t = time.time()
s.settimeout(5)
try:
    while True:
        time.sleep(0.2)
        s.sendall(b"X-a: b\r\n")   # a byte trickle must not extend the header deadline
except (BrokenPipeError, ConnectionResetError):
    pass
data = b""
try:
    while True:
        b = s.recv(4096)
        if not b: break
        data += b
except ConnectionResetError:
    pass
assert time.time() - t < 3, time.time() - t
assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:40]
PY
}
check "slowloris: headers trickling in are cut off at header_timeout (408)" t_slowloris
t_idle() {
	py <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET /kv/k1 HTTP/1.1\r\nHost: x\r\n\r\n")
s.settimeout(5)
assert b"200 OK" in s.recv(4096)
t = time.time()
assert s.recv(10) == b""
assert 1.2 < time.time() - t < 3.5, time.time() - t
PY
}
check "idle keep-alive connection closed after idle_timeout" t_idle
t_rate() {
	py <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n" * 80)
s.settimeout(5)
data = b""
while True:
    b = s.recv(65536)
    if not b: break
    data += b
assert data.count(b"HTTP/1.1 200") == 50, data.count(b"HTTP/1.1 200")
assert data.count(b"HTTP/1.1 429") == 1
PY
}
check "per-connection rate limit: 429 and close past max_req_rate" t_rate
t_cap() {
	py <<'PY'
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(8)]
time.sleep(0.2)
s = socket.create_connection(("127.0.0.1", port), 5)
s.settimeout(5)
data = s.recv(4096)
assert data.startswith(b"HTTP/1.1 503"), data[:40]
for h in held: h.close()
time.sleep(0.3)
s = socket.create_connection(("127.0.0.1", port), 5)
s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
assert b"200 OK" in s.recv(4096)
PY
}
check "connection cap: extra connection gets 503 busy, accepted again after" t_cap
t_badreq() {
	py <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET /kv/k1 HTTP/1.1\r\nHost: x\r\n\r\nBLAH\x00\x01 / HTTP/9.9\r\n\r\n")
s.settimeout(5)
data = b""
while True:
    b = s.recv(65536)
    if not b: break
    data += b
assert data.count(b"HTTP/1.1 200") == 1 and b"HTTP/1.1 400" in data, data
PY
}
check "protocol error after a good request: 400 then close" t_badreq
t_fuzzish() {
	py <<'PY'
import os, random, socket, sys
port = int(sys.argv[1])
random.seed(7)
seeds = [b"GET /kv/k1 HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD /kv/%41 HTTP/1.0\r\n\r\n",
         b"GET /kv/k1?bucket=docs&min_rev=1 HTTP/1.1\r\nIf-None-Match: W/\"1\"\r\n\r\n",
         b"GET /kv/k1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]
for i in range(300):
    b = bytearray(random.choice(seeds) * random.randint(1, 3))
    for _ in range(random.randint(0, 8)):
        op = random.random()
        p = random.randrange(len(b) + 1)
        if op < 0.4 and b: b[p % len(b)] = random.randrange(256)
        elif op < 0.7: b[p:p] = os.urandom(random.randint(1, 20))
        elif b: del b[p:p + random.randint(1, 10)]
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.settimeout(3)
    try:
        s.sendall(bytes(b)); s.shutdown(socket.SHUT_WR)
        while s.recv(65536): pass
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        pass
    s.close()
s = socket.create_connection(("127.0.0.1", port), 5)
s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
assert b"200 OK" in s.recv(4096)
PY
}
check "300 mutated requests: no crash, still serving" t_fuzzish
t_half_close() {
	py <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET /kv/k1 HTTP/1.1\r\nHost: x\r\n\r\nGET /kv/hello HTTP/1.1\r\nHost: x\r\n\r\n")
s.shutdown(socket.SHUT_WR)
s.settimeout(5)
data = b""
while True:
    b = s.recv(65536)
    if not b: break
    data += b
assert data.count(b"HTTP/1.1 200") == 2 and data.endswith(b"world"), data[-40:]
PY
}
check "pipelined requests then half-close: both answered" t_half_close

# ---- shutdown ----------------------------------------------------------------------------
t_term "SIGTERM: plain gateway drains and exits 0" "$PLPID"
t_term "SIGTERM: TLS gateway drains and exits 0" "$GWPID"
check "no ERROR lines in the gateway logs" bash -c "! grep -h ' ERROR ' '$tmp/gw-tls.log' '$tmp/gw-plain.log'"

echo "1..$n"
[ $fails = 0 ]
