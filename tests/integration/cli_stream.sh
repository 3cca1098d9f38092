#!/usr/bin/env bash
# geokv watch, get --rev, dump and snapshot save / geokv-restore (issue 11, part 2), against a
# real geokv-primary over TLS: watch sees every put, delete and purge in order (from a
# revision, and live, also after quiet waits longer than the member's long-poll), filtered by
# bucket and prefix; 1,000,000 keys loaded, dumped, and the dump equals the input and loads
# back; a snapshot saved, restored into a fresh member, same content checksum. Emits TAP.
#
#   cli_stream.sh GEOKV_PRIMARY GEOKV_CLI CERTS_SH GEOKV_RESTORE
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
CLI=$(realpath "$2")
CERTS=$3
RESTORE=$4
RUN_TIMEOUT=120

tap_start
"$CERTS" "$TMP/certs" >/dev/null || { echo "Bail out! certs.sh failed"; exit 1; }
C=$TMP/certs
export GEOKV_CONFIG=$TMP/contexts.ini GEOKV_TLS_CA=$C/ca.crt
unset GEOKV_TOKEN GEOKV_TOKEN_FILE GEOKV_CONTEXT
TLS=(--cert "$C/server.crt" --key "$C/server.key")
spawn_primary p1 "$TMP/d1" "${TLS[@]}" || { echo "Bail out! primary did not start"; cat "$TMP/p1.log"; exit 1; }
P1=$PID A1=$ADDR
export GEOKV_SERVER=$A1

# ---- watch --------------------------------------------------------------------------------------
"$CLI" bucket add w --history 10 >/dev/null
"$CLI" bucket add other >/dev/null
R0=$("$CLI" put w a 1)
"$CLI" put w b.x 2 >/dev/null
# a live watcher of the whole bucket, one of prefix "b.", both started before the writes
spawn wall "$CLI" watch w -o json --count 6
WALL=$SPAWNED
spawn wpre "$CLI" watch w b. -o json --count 2
WPRE=$SPAWNED
sleep 1
"$CLI" put w a 3 >/dev/null
"$CLI" put other a x >/dev/null
"$CLI" del w a >/dev/null
"$CLI" put w b.y 4 >/dev/null
"$CLI" purge w b.x >/dev/null
"$CLI" put w c 5 >/dev/null
sleep 6 # longer than the member's 5 s long-poll: the watcher must ask again, not stop
"$CLI" put w d 6 >/dev/null
"$CLI" put w e 7 >/dev/null
wait_until 10 sh -c "! kill -0 $WALL" ; wait "$WALL"; RC1=$?
wait_until 10 sh -c "! kill -0 $WPRE" ; wait "$WPRE"; RC2=$?
# ops and keys, in order, as JSON lines
seq_of() { grep '^{' "$TMP/$1.log" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
revs = [r["revision"] for r in rows]
assert revs == sorted(revs) and len(set(revs)) == len(revs), revs
print(" ".join("%s:%s" % (r["op"], r["key"]) + (":" + r["value"] if "value" in r else "") for r in rows))'; }
GOT=$(seq_of wall)
WANT="PUT:a:3 DEL:a PUT:b.y:4 PURGE:b.x PUT:c:5 PUT:d:6"
if [ "$RC1" -eq 0 ] && [ "$GOT" = "$WANT" ]; then ok "live watch: every put, delete, purge in revision order, past a quiet 6 s, other buckets left out"
else fail "live watch" "rc=$RC1" "want: $WANT" "got:  $GOT" "$(tail -c 300 "$TMP/wall.log")"; fi
GOT=$(seq_of wpre)
if [ "$RC2" -eq 0 ] && [ "$GOT" = "PUT:b.y:4 PURGE:b.x" ]; then ok "watch with a prefix sees only its keys"
else fail "watch with a prefix" "rc=$RC2" "got: $GOT"; fi
run "$CLI" watch w --from-rev "$R0" --count 3
# b.x's put is gone (purged with its history): what is retained, in order
case "$OUT" in *"PUT w > a revision: $R0: 1"*"PUT w > a revision: $((R0 + 2)): 3"*"DEL w > a revision: $((R0 + 4))")
	ok "watch --from-rev replays retained history in order (text output; purged records gone)" ;;
*) fail "watch --from-rev" "$OUT" ;; esac
expect_rc "watch of a missing bucket: exit 3"  3 "" "$CLI" watch nosuch --count 1
expect_rc "watch with a bad prefix: exit 6"    6 "" "$CLI" watch w '.bad' --count 1

# ---- get --rev -------------------------------------------------------------------------------------
expect_rc "get --rev: the value at an old revision" 0 "1" "$CLI" get w a --rev "$R0" --raw
expect_rc "get --rev of a revision no longer kept: exit 3" 3 "" "$CLI" get other a --rev 1

# ---- dump: 1,000,000 keys, equal to the input, loads back -------------------------------------------
python3 -c '
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"key": "user.%010d.card%06d" % (i, i % 999983),
                            "value": ("%08d" % i) * 12 + "abcd"}, separators=(",", ":")) + "\n")
' "$TMP/in.ndjson" 1000000
"$CLI" bucket add big >/dev/null
expect_rc "load 1,000,000 keys (NDJSON)"       0 "loaded 1000000 keys" "$CLI" load big "$TMP/in.ndjson" -q
T0=$(date +%s.%N)
"$CLI" dump big >"$TMP/dump.ndjson"; DRC=$?
T1=$(date +%s.%N)
if [ "$DRC" -eq 0 ] && cmp -s "$TMP/in.ndjson" "$TMP/dump.ndjson"; then
	ok "dump of 1,000,000 keys equals the input byte for byte ($(python3 -c "print('%.1f' % ($T1 - $T0))") s)"
else fail "dump equals the input" "rc=$DRC" "$(cmp "$TMP/in.ndjson" "$TMP/dump.ndjson" 2>&1 | head -1)"; fi
printf '\377\000bin' | "$CLI" put w bin - >/dev/null
"$CLI" dump w >"$TMP/w.ndjson"
"$CLI" bucket add w2 >/dev/null
expect_rc "a dump loads back (value_b64 for binary)" 0 "loaded" "$CLI" load w2 "$TMP/w.ndjson" -q
check "  and dumps the same"                  cmp -s "$TMP/w.ndjson" <("$CLI" dump w2)
check "  binary value intact"                 test "$("$CLI" get w2 bin --raw | od -An -tx1 | tr -d ' \n')" = ff0062696e
expect_rc "dump with a prefix"               0 '{"key":"b.y","value":"4"}' "$CLI" dump w b.

# ---- snapshot save, geokv-restore into a fresh member ------------------------------------------------
run "$CLI" snapshot save "$TMP/snap.bin" -o json
SUM=$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["checksum"])' 2>/dev/null)
LIVE=$("$CLI" status --checksum -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["members"][0]["checksum"])')
if [ "$RC" -eq 0 ] && [ -n "$SUM" ] && [ "$SUM" = "$LIVE" ] && [ ! -e "$TMP/snap.bin.tmp" ]; then
	ok "snapshot save: its checksum is the member's content checksum ($SUM)"
else fail "snapshot save" "rc=$RC sum=$SUM live=$LIVE" "$OUT"; fi
expect_rc "geokv-restore into a fresh dir"      0 "restored" "$RESTORE" --data "$TMP/d2" "$TMP/snap.bin"
expect_rc "geokv-restore refuses a dir with a store" 1 "fresh data dir" "$RESTORE" --data "$TMP/d2" "$TMP/snap.bin"
head -c 100000 "$TMP/snap.bin" >"$TMP/cut.bin"
expect_rc "a cut snapshot is refused by its checksums" 1 "not a complete geokv snapshot" "$RESTORE" --data "$TMP/d3" "$TMP/cut.bin"
spawn_primary p2 "$TMP/d2" "${TLS[@]}" || fail "the restored member starts" "$(tail -n 5 "$TMP/p2.log")"
A2=$ADDR
RSUM=$("$CLI" -s "$A2" status --checksum -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["members"][0]["checksum"])')
check "restored member: same content checksum ($RSUM)" test "$RSUM" = "$SUM"
check "restored member: same dump" cmp -s "$TMP/dump.ndjson" <("$CLI" -s "$A2" dump big)
expect_rc "restored member takes writes after the snapshot's revision" 0 "" "$CLI" -s "$A2" put w after restore

stop "$PID"
stop "$P1"
tap_end
