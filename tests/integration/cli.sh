#!/usr/bin/env bash
# End-to-end tests of the `geokv` CLI against a real geokv-primary (issue 3): every
# subcommand, its exit codes on bad input, and `kill -9` during `geokv load` followed by a
# restart with every acknowledged key present. Emits TAP; skips when the CLI is not built.
#
#   cli.sh GEOKV_PRIMARY RAWCLIENT_PY GEOKV_CLI
set -uo pipefail

PRIM=$1
RAW=$2
CLI=$3
TMP=$(mktemp -d /tmp/geokv-itest-cli-XXXXXX)
PIDS=()
N=0
FAILED=0

cleanup() {
	for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$FAILED" -eq 0 ]; then rm -rf "$TMP"; else echo "# logs kept in $TMP"; fi
}
trap cleanup EXIT

echo "TAP version 13"
if [ ! -x "$CLI" ]; then
	echo "ok 1 - geokv CLI end to end # SKIP $CLI not built"
	echo "1..1"
	exit 0
fi

ok()   { N=$((N+1)); echo "ok $N - $1"; }
fail() { N=$((N+1)); FAILED=$((FAILED+1)); echo "not ok $N - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
# run CMD...: sets OUT (stdout+stderr) and RC
run() { OUT=$("$@" 2>&1); RC=$?; }
# expect NAME RC WANTED-SUBSTRING CMD... : exit code and output both as wanted ("" = any)
expect() {
	local name=$1 want_rc=$2 want=$3; shift 3
	run "$@"
	if [ "$RC" -eq "$want_rc" ] && case "$OUT" in *"$want"*) true ;; *) false ;; esac; then
		ok "$name"
	else
		fail "$name" "command: $*" "want rc=$want_rc output containing: $want" "got rc=$RC: $(printf '%s' "$OUT" | head -c 400)"
	fi
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

start() {
	local name=$1 data=$2; shift 2
	ADDR=127.0.0.1:$(free_port)
	export GEOKV_SERVER=$ADDR
	"$PRIM" --data "$data" --listen "$ADDR" "$@" >>"$TMP/$name.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	for _ in $(seq 1 100); do
		python3 "$RAW" "$ADDR" status >/dev/null 2>&1 && return 0
		kill -0 "$PID" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

stop_term() {
	kill -TERM "$PID"
	for _ in $(seq 1 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
	wait "$PID"; RC=$?
}

D=$TMP/data
start cli "$D" || { fail "daemon starts" "$(cat "$TMP/cli.log")"; echo "1..$N"; exit 1; }

# ---- every subcommand ---------------------------------------------------------------------------
expect "bucket add"                     0 ""        "$CLI" bucket add users --history 5
expect "bucket add again, same config"  0 ""        "$CLI" bucket add users --history 5
expect "bucket add, other config: conflict" 4 ""    "$CLI" bucket add users --history 7
expect "bucket ls"                      0 "users"   "$CLI" bucket ls
expect "bucket info"                    0 "history:       5" "$CLI" bucket info users
expect "put"                            0 ""        "$CLI" put users alice v1
REV1=$(printf '%s' "$OUT" | tr -dc '0-9')
expect "get"                            0 "v1"      "$CLI" get users alice
run sh -c "printf v2 | '$CLI' put users alice -"
if [ "$RC" -eq 0 ]; then ok "put from stdin"; else fail "put from stdin" "$OUT"; fi
REV2=$(printf '%s' "$OUT" | tr -dc '0-9')
expect "get sees the stdin value"       0 "v2"      "$CLI" get users alice
expect "create on a live key: exit 4"   4 ""        "$CLI" create users alice x
expect "create a new key"               0 ""        "$CLI" create users bob b1
expect "update with a stale revision: exit 4" 4 ""  "$CLI" update users alice v3 "$REV1"
expect "update with the current revision" 0 ""      "$CLI" update users alice v3 "$REV2"
expect "get at an old revision"         0 "v1"      "$CLI" get users alice --revision "$REV1"
expect "history lists old values"       0 "v2"      "$CLI" history users alice
expect "keys"                           0 "bob"     "$CLI" keys users
expect "keys by prefix"                 0 "alice"   "$CLI" keys users al
expect "del"                            0 ""        "$CLI" del users bob
expect "get after del: exit 3"          3 ""        "$CLI" get users bob
expect "purge"                          0 ""        "$CLI" purge users alice
expect "get after purge: exit 3"        3 ""        "$CLI" get users alice
expect "status"                         0 "revision:" "$CLI" status

# ---- bad input ----------------------------------------------------------------------------------
expect "invalid bucket name: exit 6"    6 ""        "$CLI" bucket add 'bad bucket'
expect "invalid key: exit 6"            6 ""        "$CLI" put users '.bad' v
expect "unknown bucket: exit 3"         3 ""        "$CLI" put nosuch k v
"$CLI" bucket add small --max-value 16 >/dev/null 2>&1
expect "value over the bucket limit: exit 6" 6 ""   "$CLI" put small k 0123456789abcdefXYZ
expect "bad load line stops with a clear error" 6 "2" sh -c "printf 'ok1\tv\nno-tab-here\n' | '$CLI' load users -"
expect "still serving"                  0 ""        "$CLI" status

# ---- load, and kill -9 during a load -------------------------------------------------------------
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write("key%07d\t%s\n" % (i, "v" * 100))
' "$TMP/keys.tsv" 300000
head -n 1000 "$TMP/keys.tsv" >"$TMP/small.tsv"
expect "load 1000 keys"                 0 "loaded 1000 keys" "$CLI" load users "$TMP/small.tsv"

"$CLI" bucket add bulk >/dev/null 2>&1
"$CLI" load bulk "$TMP/keys.tsv" >"$TMP/load.out" 2>&1 &
LPID=$!; PIDS+=("$LPID")
# Kill once the store has taken a good part of the load (revision grows as batches apply).
for _ in $(seq 1 200); do
	rev=$(python3 "$RAW" "$ADDR" status 2>/dev/null | sed -n 's/.*revision=\([0-9]*\).*/\1/p')
	[ "${rev:-0}" -ge 20000 ] && break
	sleep 0.05
done
kill -9 "$PID"; wait "$PID" 2>/dev/null
wait "$LPID"; LRC=$?
ACKED=$(sed -n 's/.*loaded \([0-9]*\) keys.*/\1/p' "$TMP/load.out" | tail -n 1)
if [ -n "$ACKED" ] && [ "$LRC" -ne 0 ]; then
	ok "load interrupted by kill -9 reports acknowledged keys (acked=$ACKED, exit $LRC)"
else
	fail "load interrupted by kill -9 reports acknowledged keys" "exit $LRC" "$(head -c 400 "$TMP/load.out")"
	ACKED=0
fi
start cli2 "$D" || fail "restart after kill -9"
# The loader pipelines batches in order on one connection and the primary answers in log
# order, so the acknowledged keys are exactly the first ACKED lines.
head -n "$ACKED" "$TMP/keys.tsv" | cut -f1 >"$TMP/acked.txt"
run python3 "$RAW" "$ADDR" verify bulk "$TMP/acked.txt"
case "$OUT" in *"missing=0"*) ok "every acknowledged key present after kill -9 + restart ($OUT)" ;;
*) fail "every acknowledged key present after kill -9 + restart" "$OUT" ;; esac
expect "data loaded before the crash survives" 0 "vvv" "$CLI" get users key0000999

stop_term
if [ "$RC" -eq 0 ]; then ok "SIGTERM: exit 0"; else fail "SIGTERM: exit 0" "rc=$RC"; fi

echo "1..$N"
[ "$FAILED" -eq 0 ]
