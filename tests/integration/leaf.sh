#!/usr/bin/env bash
# Leaves end to end: three real geokv-primary processes serving the leaf feed, geokv-leaf
# processes following them (and each other), geokv-gateway reading a leaf's state/, and
# geokv-proxy between a leaf and its source for the stall and corruption faults.
#
#   leaf.sh GEOKV_PRIMARY RAWCLIENT_PY GEOKV_CLI GEOKV_LEAF GEOKV_GATEWAY GEOKV_PROXY
#
# "Converged" means the leaf's content checksum (geokv-leaf checksum: XXH64 of its snapshot
# stream, applied index and revision included) equals the one every primary reports at the
# same applied index: byte-identical content, so no entry was lost, repeated or altered.
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
RAW=$2
CLI=$3
LEAF=$4
GW=$5
PROXY=$6
export GEOKV_CLUSTER=ltest
# A high range of its own, checked free by binding (harness free_port), and below the
# kernel's ephemeral range (32768-60999 here): a member restarted after kill -9 binds its
# old ports again, and an outgoing connection must not have taken one meanwhile.
export GEOKV_TEST_PORTS=${GEOKV_TEST_PORTS:-24000-29999}

tap_start
for b in "$CLI" "$LEAF" "$GW" "$PROXY"; do
	if [ ! -x "$b" ]; then skip "leaf tests" "$b is not built"; tap_end; exit 0; fi
done

declare -a CP PP FP MPP NPID
for i in 1 2 3; do CP[i]=$(free_port); PP[i]=$(free_port); FP[i]=$(free_port); MPP[i]=$(free_port); done
PEERS="1=127.0.0.1:${PP[1]},2=127.0.0.1:${PP[2]},3=127.0.0.1:${PP[3]}"
ALL="127.0.0.1:${CP[1]},127.0.0.1:${CP[2]},127.0.0.1:${CP[3]}"
addr() { echo "127.0.0.1:${CP[$1]}"; }
feed() { echo "127.0.0.1:${FP[$1]}"; }

# waits until the process logged PATTERN after byte FROM of LOG, or died
wait_log() {
	local log=$1 from=$2 pat=$3 pid=$4 n
	for ((n = 0; n < 300; n++)); do
		tail -c "+$from" "$log" 2>/dev/null | grep -q "$pat" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
logsize() { [ -e "$1" ] && echo $(($(stat -c %s "$1") + 1)) || echo 1; }

start_node() {
	local i=$1 from; shift
	from=$(logsize "$TMP/n$i.log")
	spawn "n$i" "$PRIM" --data "$TMP/d$i" --listen "$(addr "$i")" --node-id "$i" \
		--cluster-id ltest --peers "$PEERS" --log-keep 10000 --sync-interval-ms 200 \
		--feed-listen "$(feed "$i")" --metrics-listen "127.0.0.1:${MPP[i]}" "$@"
	NPID[i]=$SPAWNED
	wait_log "$TMP/n$i.log" "$from" "INFO primary serving" "${NPID[i]}"
}

# start_leaf NAME SOURCES [ARGS...]: data in $TMP/NAME, metrics port in MP[NAME], pid in LP[NAME]
declare -A LP MP LF
start_leaf() {
	local name=$1 src=$2 from; shift 2
	[ -n "${MP[$name]:-}" ] || MP[$name]=$(free_port)
	from=$(logsize "$TMP/$name.log")
	spawn "$name" "$LEAF" --data "$TMP/$name" --primaries "$src" --cluster-id ltest \
		--metrics-listen "127.0.0.1:${MP[$name]}" --name "$name" "$@"
	LP[$name]=$SPAWNED
	wait_log "$TMP/$name.log" "$from" "INFO leaf serving" "${LP[$name]}"
}
cli() { "$CLI" --timeout 10s "$@"; }
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
# "APPLIED HASH" of the primaries when every member that answers agrees, else fails
prim_sum() {
	local out
	out=$(cli -s "$ALL" status --checksum 2>/dev/null) || return 1
	printf '%s\n' "$out" | grep -q "checksums: equal" || return 1
	out=$(printf '%s\n' "$out" | awk '/^  [0-9]+ / && $NF ~ /^[0-9a-f]+$/ { print $6, $NF }' | sort -u)
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || return 1
	echo "$out"
}
leaf_sum() { "$LEAF" checksum "$TMP/$1/state" 2>/dev/null | sed -E 's/applied=([0-9]+) .* hash=([0-9a-f]+)/\1 \2/'; }
leaf_converged() {
	local p l
	p=$(prim_sum) || return 1
	l=$(leaf_sum "$1") || return 1
	[ -n "$l" ] && [ "$p" = "$l" ]
}
metric() { curl -s "http://127.0.0.1:${MP[$1]}/metrics" | awk -v m="$2" '$1 == m { print $2; exit }'; }
leaf_source() { curl -s "http://127.0.0.1:${MP[$1]}/healthz" | sed -E 's/.*"source":"([^"]*)".*/\1/'; }
acked() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
acked_ge() { [ "$(acked "$1")" -ge "$2" ]; }
# gateway NAME LEAFNAME [ARGS]: plain HTTP over the leaf's state/, port in GP[NAME]
declare -A GP GPID
start_gateway() {
	local name=$1 leaf=$2 from; shift 2
	GP[$name]=$(free_port)
	from=$(logsize "$TMP/$name.log")
	spawn "$name" "$GW" --plain --data "$TMP/$leaf/state" --listen "127.0.0.1:${GP[$name]}" \
		--bucket c --workers 1 "$@"
	GPID[$name]=$SPAWNED
	local n
	for ((n = 0; n < 200; n++)); do
		curl -s -o /dev/null "http://127.0.0.1:${GP[$name]}/livez" && return 0
		kill -0 "$SPAWNED" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
health() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${GP[$1]}/healthz"; }
healthy() { [ "$(health "$1")" = 200 ]; }
unhealthy() { [ "$(health "$1")" = 503 ]; }

# ---- the group forms, a leaf follows it -----------------------------------------------------
for i in 1 2 3; do
	if start_node "$i"; then ok "member $i starts with a feed listener"; else fail "member $i starts" "$(tail -n 5 "$TMP/n$i.log")"; fi
done
if wait_until 10 has_leader; then ok "a leader is elected ($(leader))"; else fail "a leader is elected"; fi
expect_rc "bucket add" 0 "" cli -s "$ALL" bucket add c
if start_leaf la "$(feed 1),$(feed 2),$(feed 3)" --node-id 1; then ok "leaf la starts"; else fail "leaf la starts" "$(tail -n 5 "$TMP/la.log")"; fi
if wait_until 10 leaf_converged la; then ok "leaf la holds the primaries' content"; else fail "leaf la converges" "prim=$(prim_sum) leaf=$(leaf_sum la)"; fi
if start_gateway ga la; then ok "a gateway serves leaf la's state/"; else fail "gateway on the leaf starts" "$(tail -n 5 "$TMP/ga.log")"; fi
if wait_until 5 healthy ga; then ok "gateway /healthz 200 while the leaf is fed"; else fail "gateway healthy" "$(curl -s "http://127.0.0.1:${GP[ga]}/healthz")"; fi

# ---- converge under a steady load -----------------------------------------------------------
ACK1=$TMP/ack1
spawn load1 python3 "$RAW" "$(addr 2)" load c 30000 100 "$ACK1"
LOADP=$SPAWNED
wait_until 30 acked_ge "$ACK1" 10000
lagmax=0
for ((n = 0; n < 10; n++)); do
	lag=$(metric la geokv_leaf_lag_entries); lag=${lag:-999999}
	[ "$lag" -gt "$lagmax" ] && lagmax=$lag
	sleep 0.1
done
wait "$LOADP"
echo "# load: $(tail -n 1 "$TMP/load1.log"); leaf lag during the load: max $lagmax entries (sampled every 100 ms)"
[ "$lagmax" -lt 5000 ] && ok "leaf la keeps up under load (max lag $lagmax entries)" || fail "leaf la keeps up under load" "max lag $lagmax"
if wait_until 10 leaf_converged la; then ok "after the load: leaf la's checksum equals the primaries' ($(leaf_sum la))"; else fail "leaf la converges after the load" "prim=$(prim_sum) leaf=$(leaf_sum la)"; fi
k=$(sed -n '12345p' "$ACK1")
expect "an acknowledged write is readable at the leaf's gateway" "$k" \
	curl -s "http://127.0.0.1:${GP[ga]}/kv/$k"
rev=$(cli -s "$ALL" put c mr.1 read-your-write)
expect "?min_rev at the leaf's gateway: the write made a moment ago (rev $rev)" "read-your-write" \
	curl -s "http://127.0.0.1:${GP[ga]}/kv/mr.1?min_rev=$rev&wait_ms=2000"
expect "?min_rev beyond what exists waits, then says so" "revision not reached" \
	curl -s "http://127.0.0.1:${GP[ga]}/kv/mr.1?min_rev=$((rev + 1000))&wait_ms=200"
[ "$(metric la 'geokv_leaf_resyncs_total{reason="gap"}')" = 0 ] && ok "no gap or duplicate seen" || fail "no gap or duplicate" "$(curl -s "http://127.0.0.1:${MP[la]}/metrics" | grep resync)"

# ---- a leaf down while 200,000 writes land catches up on restart ----------------------------
stop "${LP[la]}"
[ "$RC" = 0 ] && ok "leaf la stops on SIGTERM with exit 0" || fail "leaf la stops on SIGTERM" "exit $RC"
before=$(leaf_sum la)
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    for i in range(200000):
        f.write("bulk%06d\t%s\n" % (i, ("v%06d" % i) * 8))
' "$TMP/bulk.tsv"
expect_rc "200,000 writes while leaf la is down" 0 "" cli -s "$ALL" load c "$TMP/bulk.tsv" -q
from=$(logsize "$TMP/la.log")
t0=$(date +%s%N)
if start_leaf la "$(feed 1),$(feed 2),$(feed 3)" --node-id 1; then ok "leaf la restarts"; else fail "leaf la restarts" "$(tail -n 5 "$TMP/la.log")"; fi
if wait_until 60 leaf_converged la; then
	ok "leaf la caught up the 200,000 writes in $(( ($(date +%s%N) - t0) / 1000000 )) ms: equal checksums"
else
	fail "leaf la caught up" "prim=$(prim_sum) leaf=$(leaf_sum la)"
fi
resumed=$(tail -c "+$from" "$TMP/la.log" | grep -m1 "INFO leaf following" | sed -E 's/.*from=([0-9]+).*/\1/')
[ "${resumed:-0}" -gt 0 ] && [ "$resumed" = "${before%% *}" ] &&
	ok "it resumed from its recorded position ($resumed), not from scratch" ||
	fail "resumed from the recorded position" "resumed=${resumed:-none} before=$before"
if tail -c "+$from" "$TMP/la.log" | grep -q "installed snapshot"; then
	fail "caught up from the log (no snapshot needed)" "$(tail -c "+$from" "$TMP/la.log" | grep snapshot)"
else
	ok "caught up from the log (no snapshot needed)"
fi

# ---- kill -9 of a leaf in the middle of a load: it resumes from what its store recorded ----
ACKK=$TMP/ackk
spawn loadk python3 "$RAW" "$(addr 3)" load c 30000 100 "$ACKK"
LOADP=$SPAWNED
wait_until 30 acked_ge "$ACKK" 8000
kill -9 "${LP[la]}"; wait "${LP[la]}" 2>/dev/null
killed_at=$(leaf_sum la | cut -d' ' -f1)
echo "# killed leaf la (kill -9) at applied index ${killed_at:-?} with $(acked "$ACKK") writes acknowledged"
from=$(logsize "$TMP/la.log")
if start_leaf la "$(feed 1),$(feed 2),$(feed 3)" --node-id 1; then ok "leaf la restarts after kill -9"; else fail "leaf la restarts after kill -9" "$(tail -n 5 "$TMP/la.log")"; fi
wait "$LOADP"
if wait_until 30 leaf_converged la; then ok "after kill -9 mid-load: leaf la equals the primaries"; else fail "leaf la converges after kill -9" "prim=$(prim_sum) leaf=$(leaf_sum la)"; fi
resumed=$(tail -c "+$from" "$TMP/la.log" | grep -m1 "INFO leaf following" | sed -E 's/.*from=([0-9]+).*/\1/')
[ -n "$resumed" ] && [ "$resumed" -gt 0 ] && ! tail -c "+$from" "$TMP/la.log" | grep -q "installed snapshot" &&
	ok "it resumed from its store's recorded position ($resumed), from the log" ||
	fail "resumed from the recorded position after kill -9" "resumed=${resumed:-none}"

# ---- an empty leaf after log compaction bootstraps from a snapshot --------------------------
first=$(cli -s "$(addr 2)" status | awk '/^log:/ { split($2, a, "[.][.]"); print a[1] }')
[ "${first:-1}" -gt 1 ] && ok "the primaries compacted their logs (first index $first)" || fail "logs compacted" "first=$first"
if start_leaf lb "$(feed 2),$(feed 3)" --node-id 2 --listen "127.0.0.1:$(free_port)"; then ok "empty leaf lb starts"; else fail "leaf lb starts" "$(tail -n 5 "$TMP/lb.log")"; fi
if wait_until 60 leaf_converged lb; then ok "leaf lb converges"; else fail "leaf lb converges" "prim=$(prim_sum) leaf=$(leaf_sum lb)"; fi
check "leaf lb bootstrapped from a snapshot" grep -q "installed snapshot" "$TMP/lb.log"

# ---- a leaf of a leaf ------------------------------------------------------------------------
LB_LISTEN=$(grep -m1 "INFO leaf serving" "$TMP/lb.log" | sed -E 's/.* listen=([^ ]+).*/\1/')
if start_leaf lc "$LB_LISTEN" --node-id 3; then ok "leaf lc starts, following leaf lb"; else fail "leaf lc starts" "$(tail -n 5 "$TMP/lc.log")"; fi
expect_rc "a write after lc started" 0 "" cli -s "$ALL" put c via-tree yes
if wait_until 30 leaf_converged lc; then ok "leaf of a leaf converges: lc equals the primaries"; else fail "leaf lc converges" "prim=$(prim_sum) leaf=$(leaf_sum lc)"; fi

# ---- kill -9 of the primary a leaf follows ---------------------------------------------------
src=$(leaf_source la)
victim=0
for i in 1 2 3; do [ "$src" = "$(feed "$i")" ] && victim=$i; done
[ "$victim" != 0 ] && ok "leaf la follows member $victim" || fail "leaf la's source known" "source=$src"
other=$(( victim % 3 + 1 ))
ACK2=$TMP/ack2
spawn load2 python3 "$RAW" "$(addr "$other")" load c 30000 100 "$ACK2"
LOADP=$SPAWNED
wait_until 30 acked_ge "$ACK2" 5000
kill -9 "${NPID[victim]}"; wait "${NPID[victim]}" 2>/dev/null
echo "# killed member $victim (leaf la's source) with $(acked "$ACK2") writes acknowledged"
wait "$LOADP"
echo "# load: $(tail -n 1 "$TMP/load2.log")"
moved() { local s; s=$(leaf_source la); [ -n "$s" ] && [ "$s" != "$(feed "$victim")" ]; }
if wait_until 10 moved; then ok "leaf la carries on through another source ($(leaf_source la))"; else fail "leaf la moved to another source" "$(tail -n 5 "$TMP/la.log")"; fi
if start_node "$victim"; then ok "member $victim restarts"; else fail "member $victim restarts"; fi
if wait_until 30 leaf_converged la; then ok "after kill -9 of its source: leaf la equals the primaries (no gap, no duplicate)"; else fail "leaf la converges after kill -9" "prim=$(prim_sum) leaf=$(leaf_sum la)"; fi
g=$(metric la 'geokv_leaf_resyncs_total{reason="gap"}'); h=$(metric la 'geokv_leaf_resyncs_total{reason="hash"}')
[ "$g" = 0 ] && [ "$h" = 0 ] && ok "no gap, duplicate or hash mismatch across the switch" || fail "clean switch" "gap=$g hash=$h"

# ---- a stalled feed: /healthz 503 within the bound, recovery by switching source ------------
PXC=$(free_port); PX1=$(free_port); PX2=$(free_port)
spawn proxy "$PROXY" --control "127.0.0.1:$PXC" --link "f1=127.0.0.1:$PX1>$(feed 3)" \
	--link "f2=127.0.0.1:$PX2>$(feed 2)"
PXP=$SPAWNED
wait_until 5 grep -q "proxy ready" "$TMP/proxy.log"
pctl() { "$PROXY" ctl "127.0.0.1:$PXC" "$@"; }
if start_leaf ld "127.0.0.1:$PX1,$(feed 1),$(feed 2)" --node-id 4 --stall-ms 3000; then ok "leaf ld starts behind the proxy"; else fail "leaf ld starts" "$(tail -n 5 "$TMP/ld.log")"; fi
wait_until 60 leaf_converged ld
if start_gateway gd ld --max-contact-age-ms 1000; then ok "a gateway on leaf ld (contact bound 1000 ms)"; else fail "gateway gd starts"; fi
if wait_until 10 healthy gd; then ok "gateway gd healthy"; else fail "gateway gd healthy" "$(curl -s "http://127.0.0.1:${GP[gd]}/healthz")"; fi
expect "leaf ld follows through the proxy" "127.0.0.1:$PX1" leaf_source ld
pctl hold f1 down on >/dev/null
t0=$(date +%s%N)
if wait_until 5 unhealthy gd; then
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	[ "$ms" -le 1600 ] && ok "held feed: gateway /healthz 503 after $ms ms (bound 1000 ms + 100 ms publish + probe)" ||
		fail "503 within the bound" "took $ms ms"
else
	fail "held feed turns /healthz 503" "$(curl -s "http://127.0.0.1:${GP[gd]}/healthz")"
fi
body=$(curl -s "http://127.0.0.1:${GP[gd]}/healthz")
case "$body" in *contact*|*feed*) ok "the 503 says why: $body" ;; *) fail "the 503 says why" "$body" ;; esac
if wait_until 10 healthy gd; then
	ok "recovered after $(( ($(date +%s%N) - t0) / 1000000 )) ms by switching source ($(leaf_source ld))"
else
	fail "recovers by switching source" "$(tail -n 5 "$TMP/ld.log")"
fi
check "leaf ld logged the stall" grep -q "feed stalled, switching source" "$TMP/ld.log"
pctl clear f1 >/dev/null
expect_rc "a write after the stall" 0 "" cli -s "$ALL" put c after-stall yes
if wait_until 20 leaf_converged ld; then ok "leaf ld converges after the stall"; else fail "leaf ld converges after the stall" "prim=$(prim_sum) leaf=$(leaf_sum ld)"; fi

# ---- back-pressure: a leaf that stops reading stalls its own stream, nothing else ----------
pctl clear f1 >/dev/null
if start_leaf lf "127.0.0.1:$PX1" --node-id 6 --stall-ms 30000; then ok "leaf lf starts behind the proxy"; else fail "leaf lf starts" "$(tail -n 5 "$TMP/lf.log")"; fi
wait_until 60 leaf_converged lf
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    for i in range(50000):
        f.write("big%06d\t%s\n" % (i, ("w%07d" % i) * 128))
' "$TMP/big.tsv"
anon() { awk '/^RssAnon/ { print $2 }' "/proc/$1/status"; }
pmetric() { curl -s "http://127.0.0.1:${MPP[$1]}/metrics" | awk -v m="$2" '$1 == m { print $2; exit }'; }
t0=$(date +%s%N)
expect_rc "50,000 writes of 1 KiB (50 MB), every leaf reading" 0 "" cli -s "$(addr 1)" load c "$TMP/big.tsv" -q
base=$(( ($(date +%s%N) - t0) / 1000000 ))
wait_until 30 leaf_converged lf
a0=$(anon "${NPID[3]}"); s0=$(pmetric 3 geokv_primary_feed_stalls_total)
pctl hold f1 down on >/dev/null
t0=$(date +%s%N)
expect_rc "the same 50 MB again while leaf lf's feed is held" 0 "" cli -s "$(addr 1)" load c "$TMP/big.tsv" -q
held=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "# the 50 MB load: $base ms with every leaf reading, $held ms with leaf lf held (machine load $(cut -d' ' -f1 /proc/loadavg))"
[ "$held" -le $(( base * 2 + 1000 )) ] && ok "a held leaf does not slow the group's commits ($held ms vs $base ms)" ||
	fail "a held leaf does not slow commits" "$held ms vs $base ms"
sleep 0.5
a1=$(anon "${NPID[3]}"); s1=$(pmetric 3 geokv_primary_feed_stalls_total)
[ "${s1:-0}" -gt "${s0:-0}" ] && ok "member 3 stalled that leaf's stream at its output bound (stalls $s0 -> $s1)" ||
	fail "member 3 stalled the held stream" "stalls $s0 -> $s1"
grow=$(( (a1 - a0) / 1024 ))
[ "$grow" -lt 48 ] && ok "member 3's anonymous memory grew by $grow MiB while 50 MB waited for the leaf (bound: 4 MiB output + buffers)" ||
	fail "member 3's memory stays bounded" "RssAnon $a0 -> $a1 KiB"
pctl hold f1 down off >/dev/null
if wait_until 30 leaf_converged lf; then ok "released: leaf lf resumes from the log and converges"; else fail "leaf lf converges after the hold" "prim=$(prim_sum) leaf=$(leaf_sum lf)"; fi
r=$(curl -s "http://127.0.0.1:${MP[lf]}/metrics" | awk '/^geokv_leaf_resyncs_total/ { s += $2 } END { print s + 0 }')
[ "$r" = 0 ] && ok "no re-sync was needed for the held leaf" || fail "no re-sync for the held leaf" "resyncs=$r"

# ---- a leaf whose own source is cut goes quiet: the leaf below notices and moves on --------
pctl clear f1 >/dev/null
LG_LISTEN=127.0.0.1:$(free_port)
if start_leaf lg "127.0.0.1:$PX1" --node-id 7 --listen "$LG_LISTEN"; then ok "leaf lg starts behind the proxy, serving a feed"; else fail "leaf lg starts" "$(tail -n 5 "$TMP/lg.log")"; fi
if start_leaf lh "$LG_LISTEN,$(feed 2)" --node-id 8 --stall-ms 2000; then ok "leaf lh follows leaf lg"; else fail "leaf lh starts" "$(tail -n 5 "$TMP/lh.log")"; fi
wait_until 60 leaf_converged lh
if start_gateway gh lh --max-contact-age-ms 1000; then ok "a gateway on leaf lh (contact bound 1000 ms)"; else fail "gateway gh starts"; fi
wait_until 10 healthy gh
expect "leaf lh streams from leaf lg" "$LG_LISTEN" leaf_source lh
pctl blackhole f1 down on >/dev/null
t0=$(date +%s%N)
if wait_until 10 unhealthy gh; then
	ok "lg's source cut: lh's gateway turns 503 after $(( ($(date +%s%N) - t0) / 1000000 )) ms (lg stops vouching for a stale copy)"
else
	fail "a stale upstream leaf is noticed below" "$(curl -s "http://127.0.0.1:${GP[gh]}/healthz")"
fi
if wait_until 15 healthy gh; then ok "lh recovered through its next source ($(leaf_source lh)) after $(( ($(date +%s%N) - t0) / 1000000 )) ms"; else fail "lh recovers" "$(tail -n 5 "$TMP/lh.log")"; fi
expect_rc "a write while lg is cut off" 0 "" cli -s "$ALL" put c while-lg-cut yes
if wait_until 20 leaf_converged lh; then ok "leaf lh converges through the primaries"; else fail "leaf lh converges" "prim=$(prim_sum) leaf=$(leaf_sum lh)"; fi
pctl clear f1 >/dev/null
if wait_until 30 leaf_converged lg; then ok "leaf lg converges once its source is back"; else fail "leaf lg converges" "prim=$(prim_sum) leaf=$(leaf_sum lg)"; fi

# ---- a corrupted byte in the feed is detected, never applied --------------------------------
if start_leaf le "127.0.0.1:$PX2" --node-id 5; then ok "leaf le starts behind the proxy"; else fail "leaf le starts" "$(tail -n 5 "$TMP/le.log")"; fi
wait_until 60 leaf_converged le
ACK3=$TMP/ack3
spawn load3 python3 "$RAW" "$(addr 1)" load c 20000 100 "$ACK3"
LOADP=$SPAWNED
wait_until 30 acked_ge "$ACK3" 2000
pctl corrupt f2 down 30000 3 >/dev/null
wait "$LOADP"
detected() { local r; r=$(metric le geokv_leaf_resyncs_total_sum 2>/dev/null); curl -s "http://127.0.0.1:${MP[le]}/metrics" | awk '/^geokv_leaf_resyncs_total/ { s += $2 } END { exit !(s > 0) }'; }
if wait_until 10 detected; then ok "the flipped byte was detected ($(grep -m1 -E 'feed refused|feed connection lost' "$TMP/le.log" | sed -E 's/.*(why="[^"]*"|err=[A-Z_]+).*/\1/'))"; else fail "corruption detected" "$(curl -s "http://127.0.0.1:${MP[le]}/metrics" | grep resync)"; fi
if wait_until 30 leaf_converged le; then ok "leaf le equals the primaries after the corruption (nothing corrupt applied)"; else fail "leaf le converges" "prim=$(prim_sum) leaf=$(leaf_sum le)"; fi

# ---- primaries list their leaves with lag; metrics on both sides --------------------------
expect "geokv status lists the leaves with their lag" "  leaf 1 " cli -s "$(addr 2)" status
curl -s "http://127.0.0.1:${MPP[2]}/metrics" >"$TMP/p2.metrics"
for m in geokv_primary_feed_leaves_connected geokv_primary_feed_leaf_lag_entries geokv_primary_feed_leaf_lag_seconds \
	geokv_primary_feed_leaf_last_contact_seconds geokv_primary_feed_resyncs_total geokv_primary_feed_entries_sent_total; do
	check "primary metric $m" grep -q "^$m" "$TMP/p2.metrics"
done
if command -v promtool >/dev/null; then
	check "promtool accepts the leaf's and the primary's /metrics" sh -c "curl -s http://127.0.0.1:${MP[la]}/metrics | promtool check metrics && promtool check metrics <$TMP/p2.metrics"
fi
curl -s "http://127.0.0.1:${MP[la]}/metrics" >"$TMP/la.metrics"
for m in geokv_leaf_lag_seconds geokv_leaf_lag_entries geokv_leaf_last_contact_seconds geokv_leaf_resyncs_total; do
	check "leaf metric $m" grep -q "^$m" "$TMP/la.metrics"
done

# ---- stop everything by pid -----------------------------------------------------------------
for n in la lb lc ld le lf lg lh; do
	stop "${LP[$n]}"
	[ "$RC" = 0 ] && ok "leaf $n stops on SIGTERM with exit 0" || fail "leaf $n stops" "exit $RC"
done
for n in ga gd gh; do stop "${GPID[$n]}"; done
stop "$PXP"
for i in 1 2 3; do stop "${NPID[i]}"; done
tap_end
