#!/usr/bin/env bash
# The fault campaign: Jepsen's NATS 2.12.1 fault set, through the project's own means, against
# a three-member geokv group under a continuous pipelined write load.
#
#   campaign.sh GEOKV_PRIMARY GEOKV_CLI UNSYNCED_SO UNSYNCED_RECOVER [GEOKV_PROXY]
#
# Faults (picked at random from FAULT_SEED; FAULT_KINDS="a b ..." restricts them):
#   kill-leader, kill-follower   kill -9, restart after 0.2-1.5 s
#   power-loss-one               kill -9 one member and drop every byte it had not fsynced
#                                (tests/faults/unsynced.c), restart
#   power-loss-all               the same for all three at once
#   pause-leader                 SIGSTOP for 0.5-3 s, then SIGCONT
#   bitflip-log, bitflip-state   kill -9 a follower, flip one random bit in its raft/ or
#                                state/ data.mdb, restart
#   truncate-log                 kill -9 a follower, cut its raft/data.mdb short, restart
#   full-disk                    fill one member's data tmpfs for 2 s, then free it
#   partition, partition-oneway, delay (with GEOKV_PROXY: every peer link goes through it)
# A member that refuses to start on damaged data (a non-zero exit) gets the operator's
# answer: its data directory is moved aside and it rejoins empty (by snapshot); that is
# counted and printed, as is any crash.
#
# Env: FAULTS (default 12), FAULT_SEED (default: from the clock; printed), FAULT_COVER=1
# (the first faults are every kind once, seeded order), CHECK_EVERY
# (default 4: pause the writer, converge, compare checksums). Prints per fault what was
# injected, and at the end: faults injected, writes acknowledged, acknowledged writes lost,
# members that disagreed. TAP: one line per check.
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1 CLI=$2 SHIM=$3 RECOVER=$4 PROXY=${5:-}
HERE=$(cd "$(dirname "$0")" && pwd)
WRITER=$HERE/writer.py
export GEOKV_CLUSTER=faults
FAULTS=${FAULTS:-12}
SEED=${FAULT_SEED:-$(( $(date +%s) % 100000 ))}
CHECK_EVERY=${CHECK_EVERY:-4}
RANDOM=$SEED

tap_start
if ldd "$PRIM" 2>/dev/null | grep -q libasan; then
	# the shim cannot be LD_PRELOADed ahead of ASan's runtime
	skip "fault campaign" "an ASan build cannot take the power-loss shim"
	tap_end
	exit 0
fi
echo "# fault campaign: $FAULTS faults, seed $SEED (FAULT_SEED=$SEED reproduces the choice of faults)"

declare -a CP PP NPID MNT
for i in 1 2 3; do CP[i]=$(free_port); PP[i]=$(free_port); done
addr() { echo "127.0.0.1:${CP[$1]}"; }
ALL="$(addr 1),$(addr 2),$(addr 3)"

# Each member's data on its own small tmpfs when this machine lets us mount (full-disk);
# unmounted by the EXIT trap.
TMPFS=0
umount_all() {
	local i
	for i in 1 2 3; do
		# on a failure keep each member's data for a post-mortem (the tmpfs goes away)
		[ "$_FAILED" != 0 ] && [ -d "$TMP/m$i/d" ] && cp -a "$TMP/m$i/d" "$TMP/data$i" 2>/dev/null
		[ -n "${MNT[i]:-}" ] && umount -l "${MNT[i]}" 2>/dev/null
	done
}
for i in 1 2 3; do
	mkdir -p "$TMP/m$i" "$TMP/j$i"
	if mount -t tmpfs -o size=768m tmpfs "$TMP/m$i" 2>/dev/null; then MNT[i]=$TMP/m$i; TMPFS=1; fi
done
trap 'for i in 1 2 3; do kill -9 "${NPID[i]:-0}" 2>/dev/null; done; umount_all; _cleanup' EXIT

# Peer links: direct, or one proxy link per ordered pair (i -> j) so any partition can be
# made. Each member gets its own peers list: itself at its real peer port, the others
# through the links it dials.
PROXY_PID=
if [ -n "$PROXY" ]; then
	CTL=$(free_port)
	declare -A LP
	links=()
	for i in 1 2 3; do for j in 1 2 3; do
		[ "$i" = "$j" ] && continue
		LP[$i$j]=$(free_port)
		links+=(--link "l$i$j=127.0.0.1:${LP[$i$j]}>127.0.0.1:${PP[j]}")
	done; done
	spawn proxy "$PROXY" --control "127.0.0.1:$CTL" "${links[@]}"
	PROXY_PID=$SPAWNED
	wait_until 5 grep -q "proxy ready" "$TMP/proxy.log" || { fail "proxy starts" "$(cat "$TMP/proxy.log")"; tap_end; exit 1; }
	pctl() { "$PROXY" ctl "127.0.0.1:$CTL" "$@" >/dev/null; }
fi
peers_of() {
	local i=$1 j s=""
	for j in 1 2 3; do
		if [ "$i" = "$j" ] || [ -z "$PROXY" ]; then s+="$j=127.0.0.1:${PP[j]},"
		else s+="$j=127.0.0.1:${LP[$i$j]},"; fi
	done
	echo "${s%,}"
}

# start_node I: under the storage shim; waits for "serving". Returns 1 if it exited.
start_node() {
	local i=$1 from=1 n log=$TMP/n$1.log
	[ -e "$log" ] && from=$(($(stat -c %s "$log") + 1))
	spawn "n$i" env GEOKV_UNSYNCED_DIR="$TMP/m$i" GEOKV_UNSYNCED_JOURNAL="$TMP/j$i" \
		LD_PRELOAD="$SHIM" "$PRIM" --data "$TMP/m$i/d" --listen "$(addr "$i")" --node-id "$i" \
		--cluster-id faults --peers "$(peers_of "$i")" --peer-listen "127.0.0.1:${PP[i]}" \
		--log-keep 2000 --sync-interval-ms 300
	NPID[i]=$SPAWNED
	for ((n = 0; n < 300; n++)); do
		tail -c "+$from" "$log" 2>/dev/null | grep -q "INFO primary serving" && return 0
		kill -0 "${NPID[i]}" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
REFUSED=0 CRASHED=0 WIPED=0 EXITED=0
# restart I: start; a member that refuses its damaged data is wiped and rejoins empty
restart() {
	local i=$1 rc
	start_node "$i" && return 0
	wait "${NPID[i]}" 2>/dev/null; rc=$?
	if [ "$rc" -gt 128 ]; then
		CRASHED=$((CRASHED + 1)); echo "#   member $i CRASHED on start (signal $((rc - 128))): $(tail -n 2 "$TMP/n$i.log" | tr '\n' ' ')"
	else
		REFUSED=$((REFUSED + 1)); echo "#   member $i refused to start (exit $rc): $(grep -E 'ERROR' "$TMP/n$i.log" | tail -n 1)"
	fi
	mv "$TMP/m$i/d" "$TMP/m$i/damaged.$RANDOM" 2>/dev/null || rm -rf "$TMP/m$i/d"
	rm -rf "$TMP/m$i"/damaged.*
	: >"$TMP/j$i/.none"; rm -f "$TMP/j$i"/*.undo
	WIPED=$((WIPED + 1))
	start_node "$i" || { echo "#   member $i does not start even empty"; return 1; }
}
cli() { "$CLI" --timeout 5s "$@"; }
leader() {
	local i out
	for i in 1 2 3; do
		kill -0 "${NPID[i]}" 2>/dev/null || continue
		out=$(cli -s "$(addr "$i")" status 2>/dev/null | awk '/^  [0-9]+ .* leader / { print $1; exit }')
		[ -n "$out" ] && { echo "$out"; return 0; }
	done
	return 1
}
has_leader() { leader >/dev/null; }
follower() { local l; l=$(leader) || l=1; echo $(( l % 3 + 1 )); }
kill9() { kill -9 "${NPID[$1]}" 2>/dev/null; wait "${NPID[$1]}" 2>/dev/null; }
# a process crash keeps the page cache: what it wrote is no longer at risk of a power loss
forget_unsynced() { rm -f "$TMP/j$1"/*.undo; }
power_loss() { local r; r=$("$RECOVER" "$TMP/j$1" | awk '{ n += $3 } END { print n + 0 }'); echo "#   member $1: dropped $r unsynced writes"; }
flip_bit() { # FILE: one random bit anywhere in the file
	python3 - "$1" "$RANDOM$RANDOM" <<'PY'
import os, random, sys
path, seed = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)
rnd = random.Random(seed)
off = rnd.randrange(size)
bit = rnd.randrange(8)
with open(path, "r+b") as f:
    f.seek(off); b = f.read(1)[0]; f.seek(off); f.write(bytes([b ^ (1 << bit)]))
print("#   flipped bit %d of byte %d of %d in %s" % (bit, off, size, path))
PY
}

# ---- start ----------------------------------------------------------------------------------
for i in 1 2 3; do
	start_node "$i" || { fail "member $i starts" "$(tail -n 5 "$TMP/n$i.log")"; tap_end; exit 1; }
done
wait_until 10 has_leader && ok "the group forms (leader $(leader))" || { fail "the group forms"; tap_end; exit 1; }
cli -s "$ALL" bucket add c >/dev/null || fail "bucket add"
ACK=$TMP/acked
start_writer() { rm -f "$TMP/stop"; spawn "writer" python3 "$WRITER" write "$ALL" c "$ACK" "$TMP/stop"; WPID=$SPAWNED; }
stop_writer() { touch "$TMP/stop"; wait "$WPID"; echo "#   writer: $(tail -n 1 "$TMP/writer.log")"; }
start_writer

# converged: every member answers, lag 0, one applied index, equal checksums
converged() {
	local out
	out=$(cli -s "$(addr 1)" status --checksum 2>&1) || return 1
	printf '%s\n' "$out" | grep -q "checksums: equal" || return 1
	[ "$(printf '%s\n' "$out" | awk '/^  [0-9]+ / { print $6 }' | sort -u | wc -l)" = 1 ]
}
DISAGREE=0
checkpoint() {
	stop_writer
	if wait_until 60 converged; then
		echo "#   checkpoint: converged, equal checksums, $(wc -l <"$ACK") acknowledged so far"
	else
		local out; out=$(cli -s "$(addr 1)" status --checksum 2>&1)
		if printf '%s\n' "$out" | grep -q "DIFFER"; then DISAGREE=$((DISAGREE + 1)); fi
		echo "#   checkpoint: NOT converged:"; printf '%s\n' "$out" | sed 's/^/#     /'
	fi
	start_writer
}

kinds=(kill-leader kill-follower power-loss-one power-loss-all pause-leader bitflip-log bitflip-state truncate-log)
[ "$TMPFS" = 1 ] && kinds+=(full-disk)
[ -n "$PROXY" ] && kinds+=(partition partition-oneway delay)
[ -n "${FAULT_KINDS:-}" ] && read -r -a kinds <<<"$FAULT_KINDS"
# FAULT_COVER=1: the first faults are every kind once, in an order drawn from the seed (a
# short run still mixes them all); random picks after that
if [ "${FAULT_COVER:-0}" = 1 ]; then
	order=("${kinds[@]}")
	for ((i = ${#order[@]} - 1; i > 0; i--)); do
		j=$((RANDOM % (i + 1))); t=${order[i]}; order[i]=${order[j]}; order[j]=$t
	done
fi
INJECTED=0
declare -A BYKIND
sleep 1
for ((f = 1; f <= FAULTS; f++)); do
	if [ "${FAULT_COVER:-0}" = 1 ] && [ "$f" -le "${#order[@]}" ]; then k=${order[f - 1]}
	else k=${kinds[RANDOM % ${#kinds[@]}]}; fi
	L=$(leader) || L=1
	F=$(( L % 3 + 1 ))
	# Raft keeps data through the loss of one member's data at a time: a fault that
	# damages or drops a member's data waits (up to 60 s) until the previous one is
	# repaired. Two members losing their data at once leaves one copy and no quorum to
	# elect it: that is beyond the fault model (an operator restores a member from the
	# last one), not a bug the campaign can call.
	case $k in
	bitflip-*|truncate-log|power-loss-*)
		wait_until 60 converged || echo "#   (not converged before this damage fault: injecting anyway)" ;;
	esac
	L=$(leader) || L=1
	F=$(( L % 3 + 1 ))
	echo "# fault $f: $k (leader $L)"
	case $k in
	kill-leader|kill-follower)
		t=$L; [ "$k" = kill-follower ] && t=$F
		kill9 "$t"; forget_unsynced "$t"; sleep "0.$((2 + RANDOM % 13))"; restart "$t" ;;
	power-loss-one)
		kill9 "$F"; power_loss "$F"; restart "$F" ;;
	power-loss-all)
		for i in 1 2 3; do kill -9 "${NPID[i]}" 2>/dev/null; done
		for i in 1 2 3; do wait "${NPID[i]}" 2>/dev/null; power_loss "$i"; done
		for i in 1 2 3; do restart "$i"; done ;;
	pause-leader)
		kill -STOP "${NPID[L]}"; sleep "$((RANDOM % 3)).$((5 + RANDOM % 5))"; kill -CONT "${NPID[L]}" ;;
	bitflip-log|bitflip-state)
		d=raft; [ "$k" = bitflip-state ] && d=state
		kill9 "$F"; forget_unsynced "$F"; flip_bit "$TMP/m$F/d/$d/data.mdb"; restart "$F" ;;
	truncate-log)
		kill9 "$F"; forget_unsynced "$F"
		sz=$(stat -c %s "$TMP/m$F/d/raft/data.mdb"); cut=$(( sz / 2 + RANDOM % (sz / 2) ))
		truncate -s "$cut" "$TMP/m$F/d/raft/data.mdb"; echo "#   cut raft/data.mdb from $sz to $cut bytes"
		restart "$F" ;;
	full-disk)
		avail=$(df --output=avail -B1 "$TMP/m$F" | tail -n 1)
		fallocate -l "$avail" "$TMP/m$F/filler" 2>/dev/null || dd if=/dev/zero of="$TMP/m$F/filler" bs=1M 2>/dev/null
		echo "#   member $F disk full ($(df --output=avail -h "$TMP/m$F" | tail -n 1 | tr -d ' ') free)"
		sleep 2; rm -f "$TMP/m$F/filler" ;;
	partition)
		for j in 1 2 3; do [ "$j" != "$L" ] && pctl partition "l$L$j" on && pctl partition "l$j$L" on; done
		sleep "$((1 + RANDOM % 2)).$((RANDOM % 10))"
		for j in 1 2 3; do [ "$j" != "$L" ] && pctl partition "l$L$j" off && pctl partition "l$j$L" off; done ;;
	partition-oneway)
		# the leader's messages out are lost, it still hears the others
		for j in 1 2 3; do [ "$j" != "$L" ] && pctl blackhole "l$L$j" up on; done
		sleep "$((1 + RANDOM % 2))"
		for j in 1 2 3; do [ "$j" != "$L" ] && pctl blackhole "l$L$j" up off && pctl reset "l$L$j"; done ;;
	delay)
		pctl delay all both $((20 + RANDOM % 60)) 10; sleep 2; pctl delay all both 0 ;;
	esac
	INJECTED=$((INJECTED + 1)); BYKIND[$k]=$(( ${BYKIND[$k]:-0} + 1 ))
	# A member that exited under the fault (a log append on a full disk exits by design:
	# nothing it has not persisted may be acknowledged) is restarted, as its supervisor would
	for i in 1 2 3; do
		kill -0 "${NPID[i]}" 2>/dev/null && continue
		wait "${NPID[i]}" 2>/dev/null; rc=$?
		EXITED=$((EXITED + 1))
		echo "#   member $i had exited (status $rc: $(grep -E 'ERROR' "$TMP/n$i.log" | tail -n 1 | cut -c1-160)); restarting"
		forget_unsynced "$i"; restart "$i"
	done
	wait_until 15 has_leader || echo "#   no leader 15 s after the fault"
	sleep "0.$((3 + RANDOM % 7))"
	[ $((f % CHECK_EVERY)) = 0 ] && checkpoint
done

# ---- the verdict ------------------------------------------------------------------------------
stop_writer
if wait_until 90 converged; then
	ok "after $INJECTED faults all three members converge with equal checksums"
else
	out=$(cli -s "$(addr 1)" status --checksum 2>&1)
	printf '%s\n' "$out" | grep -q "DIFFER" && DISAGREE=$((DISAGREE + 1))
	fail "all three members converge" "$out"
fi
ACKED=$(wc -l <"$ACK")
LOST=0
for i in 1 2 3; do
	out=$(python3 "$WRITER" verify "$(addr "$i")" c "$ACK" 2>&1)
	l=$(printf '%s\n' "$out" | sed -n 's/.*lost=\([0-9]*\) wrong=\([0-9]*\).*/\1 \2/p')
	set -- $l
	n=$(( ${1:-$ACKED} + ${2:-0} ))
	[ "$n" -gt "$LOST" ] && LOST=$n
	[ "$n" = 0 ] && ok "member $i serves all $ACKED acknowledged writes with their values" ||
		fail "member $i serves every acknowledged write" "$out"
done
kinds_done=""; for k in "${!BYKIND[@]}"; do kinds_done+="$k=${BYKIND[$k]} "; done
echo "# faults injected: $INJECTED ($kinds_done)"
echo "# writes acknowledged: $ACKED"
echo "# acknowledged writes lost: $LOST"
echo "# members that disagreed: $DISAGREE"
echo "# members that refused damaged data: $REFUSED, crashed on it: $CRASHED, wiped and rejoined: $WIPED, exited under a fault and restarted: $EXITED"
echo "# repairs the members made themselves: $(cat "$TMP"/n?.log | grep -c 'damaged log, repairing\|damaged data, repairing\|damaged store, rebuilding')" \
	"(entry checksum failures: $(cat "$TMP"/n?.log | grep -c 'failed its check'), truncated files: $(cat "$TMP"/n?.log | grep -c 'is truncated'))"
[ "$LOST" = 0 ] && ok "acknowledged writes lost: 0" || fail "acknowledged writes lost: $LOST"
[ "$DISAGREE" = 0 ] && ok "members that disagreed: 0" || fail "members that disagreed: $DISAGREE"
[ "$CRASHED" = 0 ] && ok "no member crashed on damaged data" || fail "members crashed on damaged data: $CRASHED"
for i in 1 2 3; do
	stop "${NPID[i]}"
	[ "$RC" = 0 ] && ok "member $i stops on SIGTERM" || fail "member $i stops on SIGTERM" "exit $RC"
done
[ -n "$PROXY_PID" ] && stop "$PROXY_PID"
tap_end
