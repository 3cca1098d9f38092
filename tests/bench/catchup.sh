#!/usr/bin/env bash
# Leaf catch-up: (1) a leaf catching up N log entries (default 1,000,000 single PUTs) from a
# primary's log, in entries/s, against the store's own apply rate for the same log
# (apply_log: kv_apply in chunks of 4096, timed alone); target >= 0.8x. (2) an empty leaf
# bootstrapping from a snapshot of K keys (default 1,000,000, 100-byte values), in seconds.
#
#   catchup.sh [--smoke] GEOKV_PRIMARY GEOKV_LEAF APPLY_LOG GEOKV_CLI RAWCLIENT_PY
#
# Prints `metric <name> <value> <unit>` lines. --smoke: 20,000 entries, 20,000 keys.
. "$(dirname "$0")/../lib/harness.sh"
SMOKE=0
[ "${1:-}" = --smoke ] && { SMOKE=1; shift; }
PRIM=$1 LEAF=$2 APPLY=$3 CLI=$4 RAW=$5
export GEOKV_TEST_PORTS=${GEOKV_TEST_PORTS:-24000-29999}
export GEOKV_CLUSTER=catchup
N=${CATCHUP_ENTRIES:-1000000}
K=${CATCHUP_KEYS:-1000000}
[ "$SMOKE" = 1 ] && { N=20000; K=20000; }

tap_start
FEED=$(free_port)
spawn_primary p "$TMP/p" --cluster-id catchup --feed-listen "127.0.0.1:$FEED" --log-keep 100000000 \
	|| { fail "primary starts"; tap_end; exit 1; }
P=$ADDR PP=$PID
"$CLI" -s "$P" bucket add c >/dev/null
t0=$(date +%s%N)
python3 "$RAW" "$P" load c "$N" 100 "$TMP/ack" >/dev/null
echo "# $N single PUTs loaded in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
applied() { "$CLI" -s "$P" status | awk '/^applied index:/ { print $3 }'; }
A=$(applied)
# polled on the leaf's /healthz (cheap), not with a checksum (a full scan every poll)
MP1=$(free_port)
leaf_applied() { curl -s "http://127.0.0.1:$MP1/healthz" | sed -n 's/.*"applied":\([0-9]*\).*/\1/p'; }
spawn l1 "$LEAF" --data "$TMP/l1" --primaries "127.0.0.1:$FEED" --cluster-id catchup --log-level warn \
	--metrics-listen "127.0.0.1:$MP1"
LP=$SPAWNED
t0=$(date +%s%N)
caught() { [ "$(leaf_applied)" = "$A" ]; }
if wait_until 600 caught; then
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	rate=$(( N * 1000 / (ms > 0 ? ms : 1) ))
	echo "metric leaf.catchup.entries $N entries"
	echo "metric leaf.catchup.ms $ms ms"
	echo "metric leaf.catchup.entries_per_s $rate entries/s"
	ok "a leaf caught up $N entries in $ms ms ($rate entries/s, from its start, polled every 50 ms)"
	[ "$("$LEAF" checksum "$TMP/l1/state" | sed -E 's/applied=([0-9]+) .*/\1/')" = "$A" ] &&
		ok "its store holds applied index $A" || fail "its store holds applied index $A"
else
	fail "the leaf catches up" "leaf=$(leaf_applied) primary=$A"
fi
stop "$LP"
stop "$PP"
out=$("$APPLY" "$TMP/p/raft" "$TMP/base")
base=$(printf '%s\n' "$out" | awk '/^apply_rate/ { print $2 }')
echo "metric leaf.catchup.store_apply_rate $base entries/s"
[ -n "${rate:-}" ] && [ -n "$base" ] && echo "metric leaf.catchup.ratio $(python3 -c "print(round($rate/$base, 2))") x"
ok "the store applies the same log at $base entries/s on its own"

# ---- bootstrap from a snapshot of K keys ---------------------------------------------------
spawn_primary q "$TMP/q" --cluster-id catchup --feed-listen "127.0.0.1:$FEED" --log-keep 10 \
	--sync-interval-ms 100 || { fail "primary q starts"; tap_end; exit 1; }
Q=$ADDR QP=$PID
"$CLI" -s "$Q" bucket add c >/dev/null
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write("key%07d\t%s\n" % (i, ("v%07d" % i) * 12 + "abcd"))
' "$TMP/keys.tsv" "$K"
"$CLI" -s "$Q" load c "$TMP/keys.tsv" -q
sleep 1
"$CLI" -s "$Q" put c last x >/dev/null
sleep 0.5
A=$("$CLI" -s "$Q" status | awk '/^applied index:/ { print $3 }')
MP2=$(free_port)
spawn l2 "$LEAF" --data "$TMP/l2" --primaries "127.0.0.1:$FEED" --cluster-id catchup \
	--metrics-listen "127.0.0.1:$MP2"
LP=$SPAWNED
t0=$(date +%s%N)
caught2() { [ "$(curl -s "http://127.0.0.1:$MP2/healthz" | sed -n 's/.*"applied":\([0-9]*\).*/\1/p')" = "$A" ]; }
if wait_until 600 caught2; then
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	echo "metric leaf.bootstrap.keys $K keys"
	echo "metric leaf.bootstrap.s $(python3 -c "print(round($ms/1000, 2))") s"
	ok "an empty leaf bootstrapped $K keys from a snapshot in $ms ms ($(grep -c 'installed snapshot' "$TMP/l2.log") snapshot)"
else
	fail "the leaf bootstraps" "$(tail -n 3 "$TMP/l2.log")"
fi
stop "$LP"
stop "$QP"
tap_end
