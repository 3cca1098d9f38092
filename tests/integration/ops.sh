#!/usr/bin/env bash
# Operational behaviour of geokv-primary: connection timeouts (HELLO deadline, idle cut),
# HELLO credentials (token-file), and the Prometheus /metrics listener (scraped, checked with
# promtool). Raw frames via tests/integration/rawclient.py. Emits TAP.
#
#   ops.sh GEOKV_PRIMARY RAWCLIENT_PY [GEOKV_CLI]
#
# Every daemon runs on a random free loopback port under a temp dir; a trap kills every
# process this script started, by pid, also on failure.
set -uo pipefail

PRIM=$1
RAW=$2
CLI=${3:-}
TMP=$(mktemp -d /tmp/geokv-ops-XXXXXX)
PIDS=()
N=0
FAILED=0

cleanup() {
	for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$FAILED" -eq 0 ]; then rm -rf "$TMP"; else echo "# logs kept in $TMP"; fi
}
trap cleanup EXIT

ok()   { N=$((N+1)); echo "ok $N - $1"; }
fail() { N=$((N+1)); FAILED=$((FAILED+1)); echo "not ok $N - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
skip() { N=$((N+1)); echo "ok $N - $1 # SKIP $2"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else fail "$name" "command: $*"; fi; }
# expect NAME WANTED-SUBSTRING COMMAND... : ok when the command's output contains it
expect() {
	local name=$1 want=$2; shift 2
	local out; out=$("$@" 2>&1)
	case "$out" in *"$want"*) ok "$name" ;; *) fail "$name" "want: $want" "got: $out" ;; esac
}

free_port() {
	python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 30000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        s.close()
PY
}

# start NAME ARGS... : starts a daemon on a fresh data dir; sets PID, ADDR, LOG; waits until it
# answers (GEOKV_TOKEN in the environment is used for that probe).
start() {
	local name=$1; shift
	PORT=$(free_port)
	ADDR=127.0.0.1:$PORT
	LOG=$TMP/$name.log
	"$PRIM" --data "$TMP/$name" --listen "$ADDR" --cluster-id itest "$@" >>"$LOG" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	for _ in $(seq 1 100); do
		if raw status >/dev/null 2>&1; then return 0; fi
		if ! kill -0 "$PID" 2>/dev/null; then return 1; fi
		sleep 0.05
	done
	return 1
}

stop_term() {
	kill -TERM "$PID"
	for _ in $(seq 1 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
	wait "$PID"; RC=$?
}

raw() { GEOKV_CLUSTER=itest python3 "$RAW" "$ADDR" "$@"; }

# in_range NAME VALUE LO HI
in_range() {
	if [ "$2" -ge "$3" ] && [ "$2" -le "$4" ]; then ok "$1 ($2 ms)"; else fail "$1" "got $2 ms, want $3..$4"; fi
}

echo "TAP version 13"

# ---- timeouts: a silent connection is cut, a busy one is not -----------------------------------
if start timeouts --hello-timeout-ms 400 --idle-timeout-ms 1000 --log-level debug; then
	ok "daemon starts with hello/idle timeouts"
else
	fail "daemon starts with timeouts" "$(cat "$TMP/timeouts.log")"
fi
raw silent >"$TMP/silent.out" 2>&1 &
S1=$!
raw idle >"$TMP/idle.out" 2>&1 &
S2=$!
expect "a busy connection outlives the idle timeout" "open answered=" raw busy 2.5 200
wait $S1 $S2
out=$(cat "$TMP/silent.out")
case "$out" in
"closed after="*) in_range "a connection without HELLO is cut at the hello timeout" "${out#closed after=}" 350 1500 ;;
*) fail "a connection without HELLO is cut" "got: $out" ;;
esac
out=$(cat "$TMP/idle.out")
case "$out" in
"closed after="*) in_range "an idle connection is cut at the idle timeout" "${out#closed after=}" 950 2500 ;;
*) fail "an idle connection is cut" "got: $out" ;;
esac
check "DEBUG line for the HELLO timeout" grep -q 'DEBUG server connection timed out, closing .*reason=hello' "$LOG"
check "DEBUG line for the idle timeout"  grep -q 'DEBUG server connection timed out, closing .*reason=idle' "$LOG"
expect "still serving after the cuts" "revision=" raw status
stop_term
check "clean exit after timeouts" [ "$RC" -eq 0 ]

if start notimeouts --hello-timeout-ms 0 --idle-timeout-ms 0; then
	expect "timeouts 0 = never: a silent connection stays" "open" raw silent 1.5
	expect "timeouts 0 = never: an idle session stays" "open" raw idle 1.5
	stop_term
else
	fail "daemon starts with timeouts off" "$(cat "$TMP/notimeouts.log")"
fi

# ---- HELLO credentials -------------------------------------------------------------------------
TOK=$TMP/token
printf 's3cret-token\n' >"$TOK"
chmod 600 "$TOK"
if GEOKV_TOKEN=s3cret-token start auth --token-file "$TOK"; then
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
stop_term
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
	stop_term
else
	fail "daemon starts without a token" "$(cat "$TMP/noauth.log")"
fi

echo "1..$N"
[ "$FAILED" -eq 0 ]
