#!/usr/bin/env bash
# Failover (BENCH.md "failover"): kill -9 of the leader under a steady sequential write load,
# a 3-member geokv group against a 3-member etcd 3.4 cluster on loopback (data on the normal
# disk, durable commits).
#
#   tests/bench/failover.sh [--smoke] [--rounds K] [--timeout S] [--mode kill|stop]
#                           [--primary BIN] [--cli BIN] [--build DIR]
#
# One writer per system (tests/bench/kvdrive.py writer: sequential 100-byte puts over a
# persistent connection; a put that fails or takes longer than --timeout, default 0.5 s, is
# retried on the next member). K rounds: find the leader, kill -9 it, wait for the writer to
# be acknowledged again, restart the killed member, wait until it is back, settle 1 s. Per
# round: time from the signal to the acknowledgement of the first write
# sent after it, and the longest gap between two acknowledged writes around it. Rounds alternate geokv, etcd (a fresh group of
# each, both running). Prints `metric` lines (p50 and max of each; ratio geokv / etcd) and a
# summary. --smoke: 1 round; etcd SKIPped if it cannot be installed.
# --mode stop: SIGSTOP instead of kill -9 (then SIGCONT, no restart). A killed process's
# kernel closes its connections, which geokv's followers take as the leader gone (an election
# at once); a stopped one closes nothing, as a lost machine or a partition: the whole
# election timeout is paid (geokv: 10 ticks of 20 ms, randomized to [200, 400) ms; etcd:
# 1 s).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=5 wtimeout=0.5 smoke=0 mode=kill PRIM="" CLI="" build=""
while [ $# -gt 0 ]; do
	case $1 in
	--smoke) smoke=1 ;;
	--rounds) rounds=$2; shift ;;
	--timeout) wtimeout=$2; shift ;;
	--mode) mode=$2; shift ;;
	--primary) PRIM=$2; shift ;;
	--cli) CLI=$2; shift ;;
	--build) build=$2; shift ;;
	-h|--help) sed -n '2,22p' "$0"; exit 0 ;;
	*) echo "failover.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ $smoke = 1 ] && rounds=1
if [ -z "$PRIM" ] || [ -z "$CLI" ]; then
	build=${build:-$root/build}
	if [ ! -x "$build/core/geokv-primary" ] || [ ! -x "$build/proto/geokv" ]; then
		[ -f "$build/build.ninja" ] || meson setup "$build" "$root" >/dev/null
		ninja -C "$build" core/geokv-primary proto/geokv >/dev/null
	fi
	PRIM=${PRIM:-$build/core/geokv-primary}
	CLI=${CLI:-$build/proto/geokv}
fi
DRIVE=$root/tests/bench/kvdrive.py
tmp=$(mktemp -d /var/tmp/geokv-failover.XXXXXX)
. "$root/tests/bench/groups.sh"
ensure_etcd
[ $ETCD_OK = 1 ] || echo "SKIP etcd: etcd-server/etcd-client cannot be installed; geokv figures only"
acks() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
# wait_acked FILE N SECONDS: until FILE has more than N lines
wait_acked() {
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		[ "$(acks "$1")" -gt "$2" ] && return 0
		sleep 0.05
	done
	return 1
}
# wait_after FILE T SECONDS: until a write sent at or after T (wall clock) is acknowledged
wait_after() {
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		tail -n 1 "$1" 2>/dev/null | awk -v t="$2" '$1 >= t { ok = 1 } END { exit !ok }' && return 0
		sleep 0.05
	done
	return 1
}

geokv_group
systems=(geokv)
if [ $ETCD_OK = 1 ]; then etcd_group; systems+=(etcd); fi
declare -A WPID
start_writer() { # system
	local s=$1 all
	[ "$s" = geokv ] && all=$GALL || all=$EALL
	python3 "$DRIVE" "$s" writer "$all" 100 "$wtimeout" "$tmp/$s.acks" 2>>"$tmp/$s.writer.log" &
	WPID[$s]=$!; pids+=("${WPID[$s]}")
}
for s in "${systems[@]}"; do start_writer "$s"; : >"$tmp/$s.kills"; done
for s in "${systems[@]}"; do wait_acked "$tmp/$s.acks" 100 30 || { echo "bench: $s writer never got going" >&2; exit 1; }; done

for r in $(seq 1 "$rounds"); do
	for s in "${systems[@]}"; do
		if [ "$s" = geokv ]; then l=$(geokv_wait_leader); pid=${GPID[l]}
		else l=$(etcd_wait_leader); pid=${EPID[l]}; fi
		# the clock read by the shell itself right after the signal (a python start to read
		# it would be tens of ms late on a loaded box)
		if [ "$mode" = stop ]; then kill -STOP "$pid"; k=$EPOCHREALTIME
		else kill -9 "$pid"; k=$EPOCHREALTIME; wait "$pid" 2>/dev/null || true; fi
		echo "$k" >>"$tmp/$s.kills" # the leader is dead (or stopped) from here
		wait_after "$tmp/$s.acks" "$k" 60 || echo "bench: $s: no write acknowledged within 60 s of the kill" >&2
		sleep 0.5 # the gap after the first ack counts too
		if [ "$mode" = stop ]; then kill -CONT "$pid"
		elif [ "$s" = geokv ]; then geokv_start "$l"; wait_port "${GCP[l]}"
		else etcd_start "$l" existing; wait_port "${ECP[l]}"; fi
		echo "bench: round $r $s: $mode of leader member $l (pid $pid), back" >&2
		sleep 2 # the restarted member catches up before the next kill
	done
done
for s in "${systems[@]}"; do kill "${WPID[$s]}"; wait "${WPID[$s]}" 2>/dev/null || true; done

for s in "${systems[@]}"; do
	python3 "$DRIVE" "$s" gaps "$tmp/$s.acks" "$tmp/$s.kills" >"$tmp/$s.gaps"
	sed "s/^/bench: $s kill-to-ack, longest gap (s): /" "$tmp/$s.gaps" >&2
done
python3 - "$tmp" "$smoke" "$rounds" "$mode" "${systems[@]}" <<'PY'
import statistics as st, sys
tmp, smoke, rounds, mode, systems = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
pre = "failover" if mode == "kill" else "failover_stop"
fig = {}
for s in systems:
    ta, gp = [], []
    for line in open(f"{tmp}/{s}.gaps"):
        a = line.split()
        if a[0] == "writes":
            print(f"metric {pre}.{s}.writes {a[1]} count")
            continue
        if a[0] != "nan":
            ta.append(float(a[0])); gp.append(float(a[1]))
    fig[s] = dict(to_ack_p50=st.median(ta) if ta else float("nan"), to_ack_max=max(ta, default=float("nan")),
                  gap_p50=st.median(gp) if gp else float("nan"), gap_max=max(gp, default=float("nan")))
    for m, v in fig[s].items():
        print(f"metric {pre}.{s}.{m} {v:.3f} s")
if "etcd" in fig:
    for m in fig["geokv"]:
        a, b = fig["geokv"][m], fig["etcd"][m]
        if a == a and b == b and b > 0:
            print(f"metric {pre}.{m}.ratio_vs_etcd {a / b:.3g} x")
g = fig["geokv"]
e = fig.get("etcd")
tail = (f"; etcd kill-to-ack p50 {e['to_ack_p50']:.2f} s, longest gap {e['gap_max']:.2f} s"
        if e else "; etcd skipped")
what = "kills -9" if mode == "kill" else "SIGSTOPs"
print(f"summary: failover{' SMOKE' if smoke == '1' else ''} ({rounds} {what} of the leader): geokv "
      f"kill-to-ack p50 {g['to_ack_p50']:.2f} s max {g['to_ack_max']:.2f} s, longest gap "
      f"{g['gap_max']:.2f} s{tail}")
PY
