#!/usr/bin/env bash
# End-to-end tests of geokv-primary as a group of one (issue 3, "What it must show"), with
# raw frames (tests/integration/rawclient.py) so the daemon is tested on its own, including
# what a real client never sends. Emits TAP.
#
#   primary.sh GEOKV_PRIMARY RAWCLIENT_PY
#
# Every daemon runs on a free loopback port (tests/lib/harness.sh) under a temp dir; every
# process this script started is killed by pid on exit, also on failure.
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
RAW=$2

# start NAME DATA ARGS...: a daemon of cluster "itest"; sets PID and ADDR (harness.sh)
start() { spawn_primary "$1" "$2" --cluster-id itest "${@:3}"; }
raw() { GEOKV_CLUSTER=itest python3 "$RAW" "$ADDR" "$@"; }

tap_start

# ---- basic operations ---------------------------------------------------------------------
D=$TMP/basic
if start basic "$D"; then ok "daemon starts and answers STATUS"; else fail "daemon starts" "$(cat "$TMP/basic.log")"; tap_end; exit 1; fi
expect "bucket add"                       "rev=1"   raw bucket-add users
expect "put"                              "rev=2"   raw put users alice hello
expect "get returns the value"            "hello"   raw get users alice
expect "create on a live key conflicts"   "KV_EEXIST" raw create users alice other
expect "create on a new key"              "rev=3"   raw create users bob b1
expect "update with the right revision"   "rev=4"   raw update users bob b2 3
expect "update with a stale revision"     "KV_EREVISION" raw update users bob b3 3
expect "get at an old revision"           "b2"      raw get users bob 4
expect "keys by prefix"                   "alice"   raw keys users al
expect "delete"                           "rev=5"   raw del users bob
expect "get after delete is not found"    "KV_ENOTFOUND" raw get users bob
expect "purge"                            "rev=6"   raw purge users alice
expect "batch applies all ops"            "count=3" raw batch users a=1 b=2 c=3
expect "batch keys readable"              "2"       raw get users b
expect "status counts revisions"          "revision=9" raw status

# ---- bad input: clear errors, daemon keeps serving ------------------------------------------
expect "invalid bucket name"              "KV_EBADBUCKET" raw bucket-add 'bad bucket!'
expect "invalid key"                      "KV_EBADKEY"    raw put users '.bad' v
expect "key with a space"                 "KV_EBADKEY"    raw put users 'a b' v
expect "unknown bucket"                   "KV_ENOBUCKET"  raw put nosuch k v
raw bucket-add small 16 >/dev/null
expect "value over the bucket limit"      "KV_ETOOBIG"    raw put small k 0123456789abcdefXYZ
expect "value at the bucket limit"        "rev="          raw put small k 0123456789abcdef
expect "frame with reserved flags: EBADMSG, closed"   "PROTO_EBADMSG(-30201) bad frame header closed" raw raw-badflags
expect "oversize frame: ETOOBIG, closed"  "PROTO_ETOOBIG(-30202) frame of 999999999 bytes exceeds max-frame" raw raw-toobig 999999999
expect "garbage bytes: EBADMSG, closed"   "closed"        raw raw-garbage
expect "request before HELLO: closed"     "expected HELLO closed" raw raw-nohello
expect "wrong cluster id: ECLUSTER"       "PROTO_ECLUSTER" raw raw-badcluster
expect "wrong protocol version: EVERSION" "PROTO_EVERSION" raw raw-badversion
expect "unknown op: EBADTYPE, kept open"  "PROTO_EBADTYPE(-30211) unknown message type open" raw raw-badop
expect "truncated op: EBADMSG, closed"    "PROTO_EBADMSG(-30201) malformed message closed" raw raw-truncated-op
expect "batch with a bad inner op: EBADMSG" "PROTO_EBADMSG" raw raw-badbatch
expect "unknown frame type: EBADTYPE, kept open" "PROTO_EBADTYPE(-30211) unknown message type open" raw raw-unknown-type
expect "still serving after bad input"    "2"             raw get users b
if kill -0 "$PID" 2>/dev/null; then ok "daemon alive after bad input"; else fail "daemon alive after bad input"; fi

# ---- TTL: the leader proposes deletes for expired keys --------------------------------------
raw bucket-add ephemeral 0 1 1500 >/dev/null
raw put ephemeral gone soon >/dev/null
expect "ttl key readable before expiry"   "soon" raw get ephemeral gone
sleep 3.5
expect "ttl key deleted after max age"    "KV_ENOTFOUND" raw get ephemeral gone

# ---- SIGTERM: clean stop ----------------------------------------------------------------------
stop "$PID"
check "SIGTERM stops with exit 0" test "$RC" -eq 0
expect "stop logged" "INFO primary stopped" cat "$TMP/basic.log"

# ---- restart: data is back --------------------------------------------------------------------
start basic2 "$D" || fail "restart"
expect "restart keeps every key"          "count=" echo "count=$(raw keys users | wc -l)"
expect "restart keeps values"             "0123456789abcdef" raw get small k
expect "restart keeps revision"           "revision=" raw status

# ---- replay: a store that lost its unsynced tail is rebuilt from the log ---------------------
stop "$PID"
cp -a "$D/state" "$TMP/state.old"
start basic3 "$D" || fail "restart for replay"
for i in 1 2 3 4 5; do raw put users "replay$i" "replay-value-$i" >/dev/null; done
stop "$PID"
rm -rf "$D/state" && cp -a "$TMP/state.old" "$D/state"
start basic4 "$D" || fail "restart with an old state/"
expect "replay logged"                    "INFO primary replayed log" cat "$TMP/basic4.log"
expect "replayed writes are present"      "replay-value-5" raw get users replay5
expect "older writes are present"         "3" raw get users c

# ---- a corrupted log entry is refused, never applied -------------------------------------------
stop "$PID"
rm -rf "$D/state" && cp -a "$TMP/state.old" "$D/state"
python3 - "$D/raft/data.mdb" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
i = b.find(b"replay-value-3")
assert i >= 0, "value not found in the log file"
b[i + 5] ^= 0x01
open(p, "wb").write(b)
PY
spawn corrupt "$PRIM" --data "$D" --listen 127.0.0.1:$(free_port)
CPID=$SPAWNED
for _ in $(seq 1 100); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$CPID" 2>/dev/null; then
	fail "corrupted log entry stops start-up" "daemon still running"; kill -9 "$CPID"
else
	wait "$CPID"; CRC=$?
	check "corrupted log entry: start-up refused (exit != 0)" test "$CRC" -ne 0
fi
expect "corruption logged with its index" "entry failed its check, refused index=" cat "$TMP/corrupt.log"
expect "replay error names the fix"       "KV_ECORRUPT" cat "$TMP/corrupt.log"

# ---- kill -9 during a load: every acknowledged key survives ----------------------------------
D=$TMP/crash
start crash "$D" || fail "start for crash test"
raw bucket-add load >/dev/null
ACK=$TMP/acked.txt; : >"$ACK"
spawn load raw load load 200000 100 "$ACK"
LPID=$SPAWNED
for _ in $(seq 1 200); do [ "$(wc -l <"$ACK")" -ge 2000 ] && break; sleep 0.05; done
stop "$PID" 9
wait "$LPID" 2>/dev/null
ACKED=$(wc -l <"$ACK")
check "load was acknowledging writes before kill -9 (acked=$ACKED)" test "$ACKED" -ge 1
start crash2 "$D" || fail "restart after kill -9"
expect "every acknowledged key present after kill -9 (acked=$ACKED)" "missing=0" raw verify load "$ACK"

# ---- SIGTERM during a load: in-flight writes finish, acked keys survive ---------------------
: >"$ACK"
spawn load2 raw load load 200000 100 "$ACK"
LPID=$SPAWNED
for _ in $(seq 1 200); do [ "$(wc -l <"$ACK")" -ge 2000 ] && break; sleep 0.05; done
stop "$PID"
wait "$LPID" 2>/dev/null
check "SIGTERM during load exits 0" test "$RC" -eq 0
start crash3 "$D" || fail "restart after SIGTERM"
expect "every acknowledged key present after SIGTERM (acked=$(wc -l <"$ACK"))" "missing=0" raw verify load "$ACK"
stop "$PID"

# ---- full store: tiny --map-max gives KV_EFULL, reads keep working, nothing acked is lost ----
D=$TMP/full
start full "$D" --map-size 1M --map-max 2M || fail "start with a tiny map-max"
raw bucket-add big 1048576 >/dev/null
: >"$ACK"
FULL=0
for i in $(seq 1 40); do
	out=$(raw put big "k$i" "$(head -c 100000 /dev/zero | tr '\0' 'v')" 2>&1)
	case "$out" in
	rev=*) echo "k$i" >>"$ACK" ;;
	*KV_EFULL*) FULL=1; break ;;
	*) fail "unexpected reply filling the store" "$out"; break ;;
	esac
done
check "a full store answers KV_EFULL (after $(wc -l <"$ACK") puts)" test "$FULL" -eq 1
expect "reads still served when full"     "present=" raw verify big "$ACK"
expect "small writes fail or succeed cleanly when full" "" raw put big tiny x
check "daemon alive after KV_EFULL" kill -0 "$PID"
stop "$PID"
check "full store stops cleanly" test "$RC" -eq 0
start full2 "$D" --map-size 1M --map-max 2M || fail "restart full store" "$(tail -5 "$TMP/full2.log")"
expect "acknowledged keys survive a full store + restart" "missing=0" raw verify big "$ACK"
stop "$PID"

tap_end
