#!/usr/bin/env bash
# End-to-end tests of the `geokv` CLI against a real geokv-primary (issue 3): every
# subcommand, its exit codes on bad input, and `kill -9` during `geokv load` followed by a
# restart with every acknowledged key present. Emits TAP; skips when the CLI is not built.
#
#   cli.sh GEOKV_PRIMARY RAWCLIENT_PY GEOKV_CLI
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
RAW=$2
CLI=$3

tap_start
if [ ! -x "$CLI" ]; then
	ok "geokv CLI end to end # SKIP $CLI not built"
	tap_end
	exit 0
fi

# start NAME DATA ARGS...: a daemon the CLI talks to through GEOKV_SERVER (harness.sh)
start() { spawn_primary "$@" && export GEOKV_SERVER=$ADDR; }

D=$TMP/data
start cli "$D" || { fail "daemon starts" "$(cat "$TMP/cli.log")"; tap_end; exit 1; }

# ---- every subcommand ---------------------------------------------------------------------------
expect_rc "bucket add"                     0 ""        "$CLI" bucket add users --history 5
expect_rc "bucket add again, same config"  0 ""        "$CLI" bucket add users --history 5
expect_rc "bucket add, other config: conflict" 4 ""    "$CLI" bucket add users --history 7
expect_rc "bucket ls"                      0 "users"   "$CLI" bucket ls
expect_rc "bucket info"                    0 "history:       5" "$CLI" bucket info users
expect_rc "put"                            0 ""        "$CLI" put users alice v1
REV1=$(printf '%s' "$OUT" | tr -dc '0-9')
expect_rc "get"                            0 "v1"      "$CLI" get users alice
run sh -c "printf v2 | '$CLI' put users alice -"
if [ "$RC" -eq 0 ]; then ok "put from stdin"; else fail "put from stdin" "$OUT"; fi
REV2=$(printf '%s' "$OUT" | tr -dc '0-9')
expect_rc "get sees the stdin value"       0 "v2"      "$CLI" get users alice
expect_rc "create on a live key: exit 4"   4 ""        "$CLI" create users alice x
expect_rc "create a new key"               0 ""        "$CLI" create users bob b1
expect_rc "update with a stale revision: exit 4" 4 ""  "$CLI" update users alice v3 "$REV1"
expect_rc "update with the current revision" 0 ""      "$CLI" update users alice v3 "$REV2"
expect_rc "get at an old revision"         0 "v1"      "$CLI" get users alice --revision "$REV1"
expect_rc "history lists old values"       0 "v2"      "$CLI" history users alice
expect_rc "keys"                           0 "bob"     "$CLI" keys users
expect_rc "keys by prefix"                 0 "alice"   "$CLI" keys users al
expect_rc "del"                            0 ""        "$CLI" del users bob
expect_rc "get after del: exit 3"          3 ""        "$CLI" get users bob
expect_rc "purge"                          0 ""        "$CLI" purge users alice
expect_rc "get after purge: exit 3"        3 ""        "$CLI" get users alice
expect_rc "status"                         0 "revision:" "$CLI" status

# ---- bad input ----------------------------------------------------------------------------------
expect_rc "invalid bucket name: exit 6"    6 ""        "$CLI" bucket add 'bad bucket'
expect_rc "invalid key: exit 6"            6 ""        "$CLI" put users '.bad' v
expect_rc "unknown bucket: exit 3"         3 ""        "$CLI" put nosuch k v
"$CLI" bucket add small --max-value 16 >/dev/null 2>&1
expect_rc "value over the bucket limit: exit 6" 6 ""   "$CLI" put small k 0123456789abcdefXYZ
expect_rc "bad load line stops with a clear error" 6 "2" sh -c "printf 'ok1\tv\nno-tab-here\n' | '$CLI' load users -"
expect_rc "still serving"                  0 ""        "$CLI" status

# ---- load, and kill -9 during a load -------------------------------------------------------------
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write("key%07d\t%s\n" % (i, "v" * 100))
' "$TMP/keys.tsv" 300000
head -n 1000 "$TMP/keys.tsv" >"$TMP/small.tsv"
expect_rc "load 1000 keys"                 0 "loaded 1000 keys" "$CLI" load users "$TMP/small.tsv"

"$CLI" bucket add bulk >/dev/null 2>&1
spawn load "$CLI" load bulk "$TMP/keys.tsv" --retry 0 # no member to fail over to
LPID=$SPAWNED
# Kill once the store has taken a good part of the load (revision grows as batches apply).
for _ in $(seq 1 200); do
	rev=$(python3 "$RAW" "$ADDR" status 2>/dev/null | sed -n 's/.*revision=\([0-9]*\).*/\1/p')
	[ "${rev:-0}" -ge 20000 ] && break
	sleep 0.05
done
stop "$PID" 9
wait "$LPID"; LRC=$?
ACKED=$(sed -n 's/.*loaded \([0-9]*\) keys.*/\1/p' "$TMP/load.log" | tail -n 1)
if [ -n "$ACKED" ] && [ "$LRC" -ne 0 ]; then
	ok "load interrupted by kill -9 reports acknowledged keys (acked=$ACKED, exit $LRC)"
else
	fail "load interrupted by kill -9 reports acknowledged keys" "exit $LRC" "$(head -c 400 "$TMP/load.log")"
	ACKED=0
fi
start cli2 "$D" || fail "restart after kill -9"
# The loader pipelines batches in order on one connection and the primary answers in log
# order, so the acknowledged keys are exactly the first ACKED lines.
head -n "$ACKED" "$TMP/keys.tsv" | cut -f1 >"$TMP/acked.txt"
run python3 "$RAW" "$ADDR" verify bulk "$TMP/acked.txt"
case "$OUT" in *"missing=0"*) ok "every acknowledged key present after kill -9 + restart ($OUT)" ;;
*) fail "every acknowledged key present after kill -9 + restart" "$OUT" ;; esac
expect_rc "data loaded before the crash survives" 0 "vvv" "$CLI" get users key0000999

stop "$PID"
if [ "$RC" -eq 0 ]; then ok "SIGTERM: exit 0"; else fail "SIGTERM: exit 0" "rc=$RC"; fi

tap_end
