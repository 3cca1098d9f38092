#!/usr/bin/env bash
# The primary group end to end: three real geokv-primary processes on loopback forming one
# Raft group. Writes through any member; linearizable reads on every member; kill -9 of the
# leader in the middle of a pipelined load; a member down while 100,000 writes land catching
# up through a snapshot (its log position compacted away); SIGSTOP of the leader; SIGTERM of
# the leader handing over. After each fault: every acknowledged write present on all three,
# and equal content checksums (`geokv status --checksum`).
#
#   cluster.sh GEOKV_PRIMARY RAWCLIENT_PY GEOKV_CLI
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
RAW=$2
CLI=$3
export GEOKV_CLUSTER=itest

tap_start
if [ ! -x "$CLI" ]; then
	skip "cluster tests" "the geokv CLI is not built"
	tap_end
	exit 0
fi

declare -a CP PP MP NPID
for i in 1 2 3; do CP[i]=$(free_port); PP[i]=$(free_port); MP[i]=$(free_port); done
PEERS="1=127.0.0.1:${PP[1]},2=127.0.0.1:${PP[2]},3=127.0.0.1:${PP[3]}"
ALL="127.0.0.1:${CP[1]},127.0.0.1:${CP[2]},127.0.0.1:${CP[3]}"
addr() { echo "127.0.0.1:${CP[$1]}"; }

# start_node I [ARGS...]: member I on its fixed ports, waited for until it serves
start_node() {
	local i=$1 from=1 n; shift
	local log=$TMP/n$i.log
	[ -e "$log" ] && from=$(($(stat -c %s "$log") + 1))
	spawn "n$i" "$PRIM" --data "$TMP/d$i" --listen "$(addr "$i")" --node-id "$i" \
		--cluster-id itest --peers "$PEERS" --log-keep 20 --sync-interval-ms 200 \
		--metrics-listen "127.0.0.1:${MP[i]}" "$@"
	NPID[i]=$SPAWNED
	for ((n = 0; n < 300; n++)); do
		tail -c "+$from" "$log" 2>/dev/null | grep -q "INFO primary serving" && return 0
		kill -0 "${NPID[i]}" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
cli() { "$CLI" --timeout 10s "$@"; }
# leader: the node id the members agree leads (from the status of any member that answers)
leader() {
	local i out
	for i in 1 2 3; do
		out=$(cli -s "$(addr "$i")" status 2>/dev/null) || true
		out=$(printf '%s\n' "$out" | awk '/^  [0-9]+ .* leader / { print $1; exit }')
		[ -n "$out" ] && { echo "$out"; return 0; }
	done
	return 1
}
has_leader() { leader >/dev/null; }
# converged: every member answers, lag 0 everywhere, checksums equal at one applied index
converged() {
	local out
	out=$(cli -s "$(addr 1)" status --checksum 2>&1) || return 1
	printf '%s\n' "$out" | grep -q "checksums: equal" || return 1
	[ "$(printf '%s\n' "$out" | awk '/^  [0-9]+ / { print $6 }' | sort -u | wc -l)" = 1 ]
}
# verify_all ACKFILE: every acknowledged key readable (linearizable) through every member
verify_all() {
	local i out bad=0
	for i in 1 2 3; do
		out=$(python3 "$RAW" "$(addr "$i")" verify c "$1" 2>&1)
		case "$out" in *"missing=0"*) ;; *) bad=1; echo "member $i: $out" ;; esac
	done
	return $bad
}
acked() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
# probe I PATH: "CODE BODY" of member I's probe on its metrics listener
probe() { curl -s -m 5 -w ' %{http_code}' "http://127.0.0.1:${MP[$1]}$2" | tr -d '\n'; }
probe_is() { case "$(probe "$1" "$2")" in *" $3") return 0 ;; *) return 1 ;; esac; }
all_healthy() { probe_is 1 /healthz 200 && probe_is 2 /healthz 200 && probe_is 3 /healthz 200; }
acked_ge() { [ "$(acked "$1")" -ge "$2" ]; }

# ---- the group forms ----------------------------------------------------------------------
for i in 1 2 3; do
	if start_node "$i"; then ok "member $i starts"; else fail "member $i starts" "$(tail -n 5 "$TMP/n$i.log")"; fi
done
if wait_until 10 has_leader; then ok "a leader is elected ($(leader))"; else fail "a leader is elected"; fi
expect_rc "status lists three members, none unreachable" 0 "members:" cli -s "$(addr 1)" status
check "/healthz is 200 on every member once the group formed" wait_until 10 all_healthy
expect "/readyz answers ok" '{"status":"ok"} 200' probe 2 /readyz
[ "$(cli -s "$(addr 1)" status | grep -c '^  [0-9]')" = 3 ] && ok "three member rows" || fail "three member rows" "$(cli -s "$(addr 1)" status)"

# ---- writes through any member, reads on every member ---------------------------------------
expect_rc "bucket add through member 1" 0 "" cli -s "$(addr 1)" bucket add c
for i in 1 2 3; do
	expect_rc "put through member $i" 0 "" cli -s "$(addr "$i")" put c "via$i" "value-$i"
done
for i in 1 2 3; do
	for j in 1 2 3; do
		expect_rc "member $i reads the write made through member $j (linearizable)" 0 "value-$j" \
			cli -s "$(addr "$i")" get c "via$j" --raw
	done
done
L=$(leader)
F=$(( L % 3 + 1 ))
expect_rc "a --stale read on a follower" 0 "value-1" cli --stale -s "$(addr "$F")" get c via1 --raw
if wait_until 10 converged; then ok "checksums equal on all three"; else fail "checksums equal" "$(cli -s "$(addr 1)" status --checksum 2>&1)"; fi

# ---- kill -9 of the leader in the middle of a pipelined load --------------------------------
L=$(leader); F=$(( L % 3 + 1 ))
ACK1=$TMP/ack1
spawn load1 python3 "$RAW" "$(addr "$F")" load c 60000 100 "$ACK1"
LP=$SPAWNED
wait_until 30 acked_ge "$ACK1" 8000
before=$(acked "$ACK1")
kill -9 "${NPID[L]}"; wait "${NPID[L]}" 2>/dev/null
echo "# killed leader $L with $before writes acknowledged"
wait "$LP"
echo "# load: $(tail -n 1 "$TMP/load1.log")"
if wait_until 10 has_leader; then ok "a new leader after kill -9 of leader $L ($(leader))"; else fail "a new leader after kill -9"; fi
got=$(acked "$ACK1")
[ "$got" -gt "$before" ] && ok "the load went on through the new leader ($got acknowledged)" ||
	fail "the load went on through the new leader" "$(tail -n 3 "$TMP/load1.log")"
if start_node "$L"; then ok "killed leader $L restarts"; else fail "killed leader restarts" "$(tail -n 5 "$TMP/n$L.log")"; fi
if wait_until 30 converged; then ok "after kill -9: all three converge with equal checksums"; else fail "converge after kill -9" "$(cli -s "$(addr 1)" status --checksum 2>&1)"; fi
run verify_all "$ACK1"
[ "$RC" = 0 ] && ok "after kill -9: all $got acknowledged writes on all three members" || fail "acknowledged writes after kill -9" "$OUT"

# ---- a member down for 100,000 writes catches up through a snapshot ------------------------
L=$(leader); F=$(( L % 3 + 1 ))
logpos() { cli -s "$(addr "$1")" status | awk -v f="$2" '/^log:/ { split($2, a, "[.][.]"); print a[f] }'; }
FLAST=$(logpos "$F" 2)
kill -9 "${NPID[F]}"; wait "${NPID[F]}" 2>/dev/null
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    for i in range(100000):
        f.write("bulk%06d\t%s\n" % (i, ("v%06d" % i) * 14))
' "$TMP/bulk.tsv"
expect_rc "100,000 writes while member $F is down" 0 "" cli -s "$ALL" load c "$TMP/bulk.tsv" -q
cut -f1 "$TMP/bulk.tsv" >"$TMP/ack2"
# compaction runs on the sync timer: the leader's log must drop the position member F had
log_compacted() { [ "$(logpos "$L" 1)" -gt $((FLAST + 1)) ]; }
wait_until 10 log_compacted
echo "# member $F stopped at log index $FLAST; the leader's log now starts at $(logpos "$L" 1)"
if start_node "$F"; then ok "member $F restarts"; else fail "member $F restarts" "$(tail -n 5 "$TMP/n$F.log")"; fi
if wait_until 60 converged; then ok "member $F caught up: equal checksums"; else fail "member $F caught up" "$(cli -s "$(addr 1)" status --checksum 2>&1)"; fi
check "member $F caught up through a snapshot (its position was compacted away)" grep -q "installed snapshot" "$TMP/n$F.log"
run verify_all "$TMP/ack2"
[ "$RC" = 0 ] && ok "the 100,000 writes are on all three" || fail "the 100,000 writes on all three" "$OUT"

# ---- a flipped byte in a follower's state/ is refused, never served; the member rebuilds --
L=$(leader); F=$(( L % 3 + 1 ))
SOUND=sound-value-0123456789abcdef
expect_rc "a record to damage" 0 "" cli -s "$(addr "$L")" put c damaged "$SOUND"
wait_until 10 converged
stop "${NPID[F]}"
flips=$(python3 - "$TMP/d$F/state/data.mdb" "$SOUND" <<'PY'
import sys
path, want = sys.argv[1], sys.argv[2].encode()
data = bytearray(open(path, "rb").read())
n, at = 0, data.find(want)
while at >= 0:
    data[at] ^= 0x20          # 's' -> 'S': a value that still looks plausible
    n += 1
    at = data.find(want, at + 1)
open(path, "wb").write(data)
print(n)
PY
)
check "the value's bytes were flipped in member $F's data.mdb ($flips copies)" test "$flips" -ge 1
if start_node "$F"; then ok "member $F restarts on its damaged store"; else fail "member $F restarts on a damaged store" "$(tail -n 5 "$TMP/n$F.log")"; fi
run cli --stale -s "$(addr "$F")" get c damaged --raw
case "$OUT" in
*Sound-value*) fail "the damaged record is never served" "$OUT" ;;
*) ok "the damaged record is never served (got: ${OUT:0:60})" ;;
esac
check "member $F logs the failed checksum" wait_until 10 grep -q "failed its checksum" "$TMP/n$F.log"
check "member $F rebuilds its store from the group" wait_until 20 grep -q "damaged store, rebuilding it" "$TMP/n$F.log"
check "member $F is the same process (re-executed, pid ${NPID[F]})" kill -0 "${NPID[F]}"
if wait_until 60 converged; then ok "after the rebuild: equal checksums on all three"; else fail "converge after the rebuild" "$(cli -s "$(addr 1)" status --checksum 2>&1)"; fi
expect_rc "member $F serves the sound value again" 0 "$SOUND" cli --stale -s "$(addr "$F")" get c damaged --raw
check "the damaged store was kept aside for the operator" test -d "$TMP/d$F/state.damaged"

# ---- SIGSTOP of the leader ---------------------------------------------------------------
L=$(leader); F=$(( L % 3 + 1 ))
ACK3=$TMP/ack3
spawn load3 python3 "$RAW" "$(addr "$F")" load c 30000 100 "$ACK3"
LP=$SPAWNED
wait_until 30 acked_ge "$ACK3" 5000
kill -STOP "${NPID[L]}"
echo "# paused leader $L with $(acked "$ACK3") writes acknowledged"
newl() { local n; n=$(leader) && [ "$n" != "$L" ]; }
if wait_until 10 newl; then ok "a new leader while leader $L is paused ($(leader))"; else fail "a new leader while paused"; fi
sleep 1
kill -CONT "${NPID[L]}"
wait "$LP"
echo "# load: $(tail -n 1 "$TMP/load3.log")"
if wait_until 30 converged; then ok "after SIGSTOP: all three converge with equal checksums"; else fail "converge after SIGSTOP" "$(cli -s "$(addr 1)" status --checksum 2>&1)"; fi
run verify_all "$ACK3"
[ "$RC" = 0 ] && ok "after SIGSTOP: all $(acked "$ACK3") acknowledged writes on all three" || fail "acknowledged writes after SIGSTOP" "$OUT"
run verify_all "$ACK1"
[ "$RC" = 0 ] && ok "the writes of the first load are still there" || fail "first load still there" "$OUT"

# ---- SIGTERM of the leader hands leadership over ------------------------------------------
L=$(leader)
stop "${NPID[L]}"
[ "$RC" = 0 ] && ok "leader $L stops on SIGTERM with exit 0" || fail "leader stops on SIGTERM" "exit $RC"
check "the leader handed leadership over before stopping" grep -q "leadership handed over" "$TMP/n$L.log"
newl() { local n; n=$(leader) && [ "$n" != "$L" ]; }
if wait_until 5 newl; then ok "the group has a leader again ($(leader))"; else fail "a leader after SIGTERM"; fi
F=$(( L % 3 + 1 ))
expect_rc "writes go on with two members" 0 "" cli -s "$(addr "$F")" put c after-term yes

# A member left alone loses its leader: the probes say so (a GTM or Kubernetes stops sending
# it traffic), while /livez stays 200 (a restart would not help).
O=$(( F % 3 + 1 )); [ "$O" = "$L" ] && O=$(( O % 3 + 1 ))
stop "${NPID[O]}"
[ "$RC" = 0 ] && ok "member $O stops on SIGTERM with exit 0" || fail "member $O stops" "exit $RC"
check "the member left alone turns /healthz 503" wait_until 10 probe_is "$F" /healthz 503
expect "its /healthz body names the reason" '"status":"unavailable","reason":"' probe "$F" /healthz
check "its /readyz is 503 too" probe_is "$F" /readyz 503
expect "its /livez stays 200" '{"status":"ok"} 200' probe "$F" /livez
stop "${NPID[F]}"
[ "$RC" = 0 ] && ok "member $F stops on SIGTERM with exit 0" || fail "member $F stops" "exit $RC"
tap_end
