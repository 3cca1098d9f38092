#!/usr/bin/env bash
# Operational behaviour of geokv-primary: connection timeouts (HELLO deadline, idle cut),
# HELLO credentials (token-file), and the Prometheus /metrics listener (scraped, checked with
# promtool). Raw frames via tests/integration/rawclient.py. Emits TAP.
#
#   ops.sh GEOKV_PRIMARY RAWCLIENT_PY [GEOKV_CLI]
#
# Every daemon runs on a free loopback port (tests/lib/harness.sh) under a temp dir; every
# process this script started is killed by pid on exit, also on failure.
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
RAW=$2
CLI=${3:-}

# start NAME ARGS...: a daemon of cluster "itest" on a fresh data dir; sets PID, ADDR, LOG
# (harness.sh)
start() { spawn_primary "$1" "$TMP/$1" --cluster-id itest "${@:2}"; }
raw() { GEOKV_CLUSTER=itest python3 "$RAW" "$ADDR" "$@"; }

# in_range NAME VALUE LO HI
in_range() {
	if [ "$2" -ge "$3" ] && [ "$2" -le "$4" ]; then ok "$1 ($2 ms)"; else fail "$1" "got $2 ms, want $3..$4"; fi
}

tap_start

# ---- timeouts: a silent connection is cut, a busy one is not -----------------------------------
if start timeouts --hello-timeout-ms 400 --idle-timeout-ms 1000 --log-level debug; then
	ok "daemon starts with hello/idle timeouts"
else
	fail "daemon starts with timeouts" "$(cat "$TMP/timeouts.log")"
fi
spawn silent raw silent
S1=$SPAWNED
spawn idle raw idle
S2=$SPAWNED
expect "a busy connection outlives the idle timeout" "open answered=" raw busy 2.5 200
wait $S1 $S2
out=$(cat "$TMP/silent.log")
case "$out" in
"closed after="*) in_range "a connection without HELLO is cut at the hello timeout" "${out#closed after=}" 350 1500 ;;
*) fail "a connection without HELLO is cut" "got: $out" ;;
esac
out=$(cat "$TMP/idle.log")
case "$out" in
"closed after="*) in_range "an idle connection is cut at the idle timeout" "${out#closed after=}" 950 2500 ;;
*) fail "an idle connection is cut" "got: $out" ;;
esac
raw bucket-add slow >/dev/null
out=$(raw noread slow)
case "$out" in
"closed after="*) in_range "a peer that stops reading its replies is cut at the idle timeout" "${out#closed after=}" 0 2500 ;;
*) fail "a peer that stops reading its replies is cut" "got: $out" ;;
esac
# One 64 KiB read of GETs for a 1 MiB value once queued ~2 GiB of replies: replies now stop
# at the output high-water mark (16 MiB), and reads a ReadIndex round confirms together wait
# for output room too, so the daemon's peak memory stays small (53 MiB; 122 under ASan).
hwm=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$PID/status")
check "a non-reading peer cannot make the daemon buffer without bound (peak ${hwm} MiB)" [ "${hwm:-9999}" -lt 250 ]
check "DEBUG line for the HELLO timeout" grep -q 'DEBUG server connection timed out, closing .*reason=hello' "$LOG"
check "DEBUG line for the idle timeout"  grep -q 'DEBUG server connection timed out, closing .*reason=idle' "$LOG"
expect "still serving after the cuts" "revision=" raw status
stop "$PID"
check "clean exit after timeouts" [ "$RC" -eq 0 ]

if start notimeouts --hello-timeout-ms 0 --idle-timeout-ms 0; then
	expect "timeouts 0 = never: a silent connection stays" "open" raw silent 1.5
	expect "timeouts 0 = never: an idle session stays" "open" raw idle 1.5
	stop "$PID"
else
	fail "daemon starts with timeouts off" "$(cat "$TMP/notimeouts.log")"
fi

# ---- HELLO credentials -------------------------------------------------------------------------
TOK=$TMP/token
printf 's3cret-token\n' >"$TOK"
chmod 600 "$TOK"
if start auth --token-file "$TOK"; then
	ok "daemon starts with a token-file"
else
	fail "daemon starts with a token-file" "$(cat "$TMP/auth.log")"
fi
expect "HELLO with the token: HELLO_OK"          "type=2 open" env GEOKV_TOKEN=s3cret-token python3 "$RAW" "$ADDR" raw-hello
expect "HELLO without a token: EAUTH, closed"    "PROTO_EAUTH(-30204) authentication failed closed" env GEOKV_TOKEN= python3 "$RAW" "$ADDR" raw-hello
expect "HELLO with a wrong token: EAUTH, closed" "PROTO_EAUTH(-30204) authentication failed closed" env GEOKV_TOKEN=s3cret-tokeN python3 "$RAW" "$ADDR" raw-hello
expect "HELLO with a token prefix: EAUTH"        "PROTO_EAUTH" env GEOKV_TOKEN=s3cret python3 "$RAW" "$ADDR" raw-hello
expect "HELLO with a longer token: EAUTH"        "PROTO_EAUTH" env GEOKV_TOKEN=s3cret-token2 python3 "$RAW" "$ADDR" raw-hello
expect "requests work after the right HELLO"     "rev=1" env GEOKV_TOKEN=s3cret-token GEOKV_CLUSTER=itest python3 "$RAW" "$ADDR" bucket-add users
check "a refused HELLO logs a WARN with the peer" grep -q 'WARN server bad credentials in HELLO, closing peer=127.0.0.1:' "$LOG"
if [ -n "$CLI" ] && [ -x "$CLI" ]; then
	expect "geokv CLI with GEOKV_TOKEN writes"   "2" env GEOKV_TOKEN=s3cret-token "$CLI" -s "$ADDR" put users k v
	expect "geokv CLI with GEOKV_TOKEN reads"    "v" env GEOKV_TOKEN=s3cret-token "$CLI" -s "$ADDR" get users k
	if env -u GEOKV_TOKEN "$CLI" -s "$ADDR" get users k >"$TMP/cli-noauth.out" 2>&1; then
		fail "geokv CLI without the token is refused" "$(cat "$TMP/cli-noauth.out")"
	else
		ok "geokv CLI without the token is refused (exit $?)"
	fi
else
	skip "geokv CLI with a token" "geokv CLI not built"
fi
stop "$PID"
check "clean exit with a token" [ "$RC" -eq 0 ]

expect "a missing token-file is a config error" "cannot read token-file" "$PRIM" --data "$TMP/x" --token-file "$TMP/nosuch"
"$PRIM" --data "$TMP/x" --token-file "$TMP/nosuch" >/dev/null 2>&1
check "... exit 2" [ $? -eq 2 ]
: >"$TMP/empty"
expect "an empty token-file is a config error" "is empty" "$PRIM" --data "$TMP/x" --token-file "$TMP/empty"
head -c 5000 /dev/zero | tr '\0' a >"$TMP/long"
expect "a token over 4096 bytes is a config error" "more than 4096" "$PRIM" --data "$TMP/x" --token-file "$TMP/long"
if start noauth; then
	expect "without token-file a HELLO carrying a token is accepted" "type=2 open" env GEOKV_TOKEN=whatever python3 "$RAW" "$ADDR" raw-hello
	stop "$PID"
else
	fail "daemon starts without a token" "$(cat "$TMP/noauth.log")"
fi

# ---- /metrics -----------------------------------------------------------------------------------
# http REQUEST-BYTES (python escapes) [PAUSE]: send to the metrics port, print the status line and
# the body length; with PAUSE, send the request in two halves PAUSE seconds apart.
http() {
	python3 - "$MADDR" "$1" "${2:-0}" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
req = sys.argv[2].encode().decode("unicode_escape").encode("latin-1")
s = socket.create_connection((host, int(port)), timeout=10)
if float(sys.argv[3]):
    s.sendall(req[:len(req) // 2]); time.sleep(float(sys.argv[3])); s.sendall(req[len(req) // 2:])
else:
    s.sendall(req)
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
head, _, body = data.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode(), "body=%d" % len(body))
PY
}
scrape() { python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://$MADDR/metrics', timeout=10).read().decode())" >"$1"; }
# metric FILE 'name{labels}' : the sample's value (empty when absent)
metric() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
# grew NAME FILE1 FILE2 'name{labels}' MIN : ok when the value grew by at least MIN
grew() {
	local a b; a=$(metric "$2" "$4"); b=$(metric "$3" "$4")
	if [ -n "$a" ] && [ -n "$b" ] && python3 -c "import sys; sys.exit(0 if float('$b') - float('$a') >= float('$5') else 1)"; then
		ok "$1"
	else
		fail "$1" "$4: before=$a after=$b, want growth >= $5"
	fi
}
# is NAME FILE 'name{labels}' VALUE
is() { local v; v=$(metric "$2" "$3"); if [ "$v" = "$4" ]; then ok "$1"; else fail "$1" "$3 = '$v', want $4"; fi; }
promcheck() {
	if command -v promtool >/dev/null; then
		local out; if out=$(promtool check metrics <"$2" 2>&1); then ok "$1"; else fail "$1" "$out"; fi
	else
		skip "$1" "promtool not installed (deploy/deps.sh test)"
	fi
}

MPORT=$(free_port)
MADDR=127.0.0.1:$MPORT
if start metrics --metrics-listen "$MADDR" --idle-timeout-ms 60000; then
	ok "daemon starts with --metrics-listen"
else
	fail "daemon starts with --metrics-listen" "$(cat "$TMP/metrics.log")"
fi
check "the metrics listener is logged" grep -q "INFO metrics serving /metrics listen=$MADDR" "$LOG"
scrape "$TMP/m1"
check "GET /metrics answers" grep -q '^geokv_primary_revision 0$' "$TMP/m1"
promcheck "promtool check metrics: first scrape" "$TMP/m1"

spawn idle8 raw idle 60
IDLE=$SPAWNED
raw bucket-add users >/dev/null
expect "a pipelined load of 2000 puts" "acked=2000 errors=0" raw load users 2000 100 "$TMP/acks"
raw get users k000001 >/dev/null
raw get users nosuch >/dev/null
raw raw-badop >/dev/null
raw raw-unknown-type >/dev/null
raw raw-badcluster >/dev/null
sleep 0.2
scrape "$TMP/m2"
promcheck "promtool check metrics: after writes" "$TMP/m2"
is   "requests_total counts the puts"        "$TMP/m2" 'geokv_primary_requests_total{op="put",status="ok"}' 2000
is   "requests_total counts bucket_add"      "$TMP/m2" 'geokv_primary_requests_total{op="bucket_add",status="ok"}' 1
grew "requests_total counts the GETs"        "$TMP/m1" "$TMP/m2" 'geokv_primary_requests_total{op="get",status="ok"}' 1
is   "requests_total counts errors by name"  "$TMP/m2" 'geokv_primary_requests_total{op="get",status="KV_ENOTFOUND"}' 1
grew "write latency histogram moves"         "$TMP/m1" "$TMP/m2" 'geokv_primary_write_duration_seconds_count' 2001
grew "write latency +Inf bucket = count"     "$TMP/m1" "$TMP/m2" 'geokv_primary_write_duration_seconds_bucket{le="+Inf"}' 2001
grew "fsync latency histogram moves"         "$TMP/m1" "$TMP/m2" 'geokv_primary_log_fsync_duration_seconds_count' 1
# 2001 writes plus the empty entry a leader appends when its term starts.
groups=$(metric "$TMP/m2" geokv_primary_commit_group_entries_count)
gsum=$(metric "$TMP/m2" geokv_primary_commit_group_entries_sum)
if [ -n "$groups" ] && [ "$gsum" = 2002 ] && [ "$groups" -lt 2002 ]; then
	ok "group commit histogram: 2002 entries in $groups groups"
else
	fail "group commit histogram" "count=$groups sum=$gsum"
fi
is   "revision gauge"                        "$TMP/m2" geokv_primary_revision 2001
is   "applied index gauge"                   "$TMP/m2" geokv_primary_applied_index 2002
is   "log last index gauge"                  "$TMP/m2" geokv_primary_log_last_index 2002
is   "log first index gauge"                 "$TMP/m2" geokv_primary_log_first_index 1
is   "live keys gauge"                       "$TMP/m2" geokv_primary_store_keys 2000
grew "store map used grows"                  "$TMP/m1" "$TMP/m2" geokv_primary_store_map_used_bytes 100000
check "store map size reported"              [ -n "$(metric "$TMP/m2" geokv_primary_store_map_size_bytes)" ]
is   "open connections gauge (one idle peer)" "$TMP/m2" geokv_primary_connections_open 1
grew "bytes in"                              "$TMP/m1" "$TMP/m2" geokv_primary_received_bytes_total 200000
grew "bytes out"                             "$TMP/m1" "$TMP/m2" geokv_primary_sent_bytes_total 10000
is   "rejected frames: unknown op"           "$TMP/m2" 'geokv_primary_frames_rejected_total{reason="unknown_op"}' 1
is   "rejected frames: unknown type"         "$TMP/m2" 'geokv_primary_frames_rejected_total{reason="unknown_type"}' 1
is   "rejected frames: cluster"              "$TMP/m2" 'geokv_primary_frames_rejected_total{reason="cluster"}' 1
kill "$IDLE" 2>/dev/null; wait "$IDLE" 2>/dev/null

expect "GET /metrics: 200"                   "HTTP/1.1 200 OK" http 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'
expect "GET /metrics?x=1: 200"               "HTTP/1.1 200 OK" http 'GET /metrics?x=1 HTTP/1.0\r\n\r\n'
expect "HEAD /metrics: 200, no body"         "HTTP/1.1 200 OK body=0" http 'HEAD /metrics HTTP/1.1\r\n\r\n'
expect "request split across packets: 200"   "HTTP/1.1 200 OK" http 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n' 0.3
expect "other path: 404"                     "HTTP/1.1 404" http 'GET / HTTP/1.1\r\n\r\n'
expect "GET /livez: 200"                     "HTTP/1.1 200 OK body=16" http 'GET /livez HTTP/1.1\r\n\r\n'
expect "GET /readyz of a serving node: 200"  "HTTP/1.1 200 OK body=16" http 'GET /readyz HTTP/1.1\r\n\r\n'
expect "GET /healthz of a serving node: 200" "HTTP/1.1 200 OK body=16" http 'GET /healthz?verbose HTTP/1.1\r\n\r\n'
expect "HEAD /healthz: 200, no body"         "HTTP/1.1 200 OK body=0" http 'HEAD /healthz HTTP/1.1\r\n\r\n'
expect "POST: 405"                           "HTTP/1.1 405" http 'POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n'
expect "garbage: 400"                        "HTTP/1.1 400" http 'hello\r\n\r\n'
expect "request head over 8 KiB: 431"        "HTTP/1.1 431" http "GET /metrics HTTP/1.1\r\nX: $(head -c 9000 /dev/zero | tr '\0' a)\r\n\r\n"
# A silent scraper holds no one up, and is cut after its 5 s budget.
python3 - "$MADDR" >"$TMP/msilent" 2>&1 <<'PY' &
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
t0 = time.monotonic()
s.settimeout(15)
try:
    s.recv(10)
except OSError:
    pass
print("closed after=%d" % ((time.monotonic() - t0) * 1000))
PY
MSIL=$!
sleep 0.2
expect "a scrape while another /metrics peer is silent"  "HTTP/1.1 200 OK" http 'GET /metrics HTTP/1.1\r\n\r\n'
expect "client traffic while a /metrics peer is silent"  "revision=2001" raw status
wait "$MSIL"
out=$(cat "$TMP/msilent")
case "$out" in
"closed after="*) in_range "a silent /metrics peer is cut after 5 s" "${out#closed after=}" 4500 7000 ;;
*) fail "a silent /metrics peer is cut" "got: $out" ;;
esac
scrape "$TMP/m3"
grew "scrapes are counted"                   "$TMP/m2" "$TMP/m3" geokv_primary_metrics_scrapes_total 5
stop "$PID"
check "clean exit with /metrics" [ "$RC" -eq 0 ]

# Off by default; a bad or busy address is a start-up error.
if start nometrics; then
	check "no /metrics listener by default" bash -c "! grep -q 'serving /metrics' '$LOG'"
	BUSY=$ADDR
	"$PRIM" --data "$TMP/busy" --listen "127.0.0.1:$(free_port)" --metrics-listen "$BUSY" >"$TMP/busy.log" 2>&1
	RC=$?
	check "metrics-listen on a port in use: exit 1" [ "$RC" -eq 1 ]
	check "... with an ERROR line" grep -q 'ERROR metrics cannot listen' "$TMP/busy.log"
	stop "$PID"
fi
"$PRIM" --data "$TMP/bad" --metrics-listen "nonsense" >"$TMP/bad.log" 2>&1
RC=$?
check "a bad metrics-listen address: exit 1 with an ERROR line" bash -c "[ $RC -eq 1 ] && grep -q 'bad metrics-listen address' '$TMP/bad.log'"

tap_end
