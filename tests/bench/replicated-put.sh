#!/usr/bin/env bash
# Replicated put (BENCH.md "replicated put"): a 3-member geokv group against a 3-member etcd
# 3.4 cluster, both on loopback, data on the normal disk, durable commits (geokv fsyncs its
# Raft log before acknowledging, etcd its WAL). 100-byte values.
#
#   tests/bench/replicated-put.sh [--smoke] [--seq N] [--puts N] [--conns N] [--pairs N]
#                                 [--primary BIN] [--cli BIN] [--build DIR]
#
# Workloads, run pair by pair (geokv, etcd; a fresh group of each per pair):
#   1. sequential: --seq single puts one after the other on one persistent connection to the
#      leader (geokv: raw frames, tests/integration/rawclient.py; etcd: HTTP/JSON /v3/kv/put,
#      keep-alive): p50 / p99 latency
#   2. concurrent: --puts single puts with --conns in flight (geokv: one pipelined connection
#      to the leader; etcd: --conns keep-alive HTTP connections spread over the members, from
#      4 client processes so the Python client is not the bottleneck): puts/s, p99
#   3. geokv only, context: `geokv load` of the same puts, --batch 1 (one put per Raft entry)
#      and the default --batch 1000
# Prints `metric <name> <value> <unit>` lines (ratio = geokv / etcd, median of the pairs with
# min-max) and a summary line. --smoke: tiny counts, one pair; etcd SKIPped if it cannot be
# installed. Figures from --smoke are meaningless.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
nseq=2000 nputs=100000 conns=32 pairs=3 smoke=0 PRIM="" CLI="" build=""
while [ $# -gt 0 ]; do
	case $1 in
	--smoke) smoke=1 ;;
	--seq) nseq=$2; shift ;;
	--puts) nputs=$2; shift ;;
	--conns) conns=$2; shift ;;
	--pairs) pairs=$2; shift ;;
	--primary) PRIM=$2; shift ;;
	--cli) CLI=$2; shift ;;
	--build) build=$2; shift ;;
	-h|--help) sed -n '2,21p' "$0"; exit 0 ;;
	*) echo "replicated-put.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ $smoke = 1 ] && { nseq=50 nputs=1000 pairs=1; }
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
# data on the normal disk (not a tmpfs): durable commits must really reach the disk
tmp=$(mktemp -d /var/tmp/geokv-rput.XXXXXX)
. "$root/tests/bench/groups.sh"
ensure_etcd
[ $ETCD_OK = 1 ] || echo "SKIP etcd: etcd-server/etcd-client cannot be installed; geokv figures only"

results=$tmp/results
: >"$results"
rec() { # "system metric value": a run that produced no value is left out, said on stderr
	set -- $*
	if [ $# -ge 3 ]; then echo "$*" >>"$results"; else echo "bench: no $* figure (see above)" >&2; fi
}

# the same bytes for `geokv load`: key<TAB>value lines
python3 - "$tmp/load.tsv" "$nputs" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        k = "l%08d" % i
        f.write(k + "\t" + (k * 12)[:100] + "\n")
PY

echo "metric replicated_put.loadavg1.start $(cut -d' ' -f1 /proc/loadavg) load"
for pair in $(seq 1 "$pairs"); do
	geokv_group
	read -r p50 p99 rate <<<"$(python3 "$DRIVE" geokv seq "$(gaddr "$GLEADER")" "$nseq" 100)"
	rec "geokv seq_p50 $p50"; rec "geokv seq_p99 $p99"; rec "geokv seq_rate $rate"
	read -r tput cp99 errs <<<"$(python3 "$DRIVE" geokv conc "$(gaddr "$GLEADER")" "$nputs" 100 "$conns")"
	rec "geokv conc_rate $tput"; rec "geokv conc_p99 $cp99"
	echo "bench: pair $pair geokv: sequential p50 $p50 ms p99 $p99 ms ($rate/s); $conns in flight: $tput puts/s p99 $cp99 ms errors $errs" >&2
	for b in 1 1000; do
		t0=$(date +%s.%N)
		"$CLI" -s "$(gaddr "$GLEADER")" load bench "$tmp/load.tsv" -q --batch "$b" --window "$(( b == 1 ? conns : 4 ))" >/dev/null
		t1=$(date +%s.%N)
		r=$(python3 -c "print(round($nputs/($t1-$t0)))")
		rec "geokv cli_load_b$b $r"
		echo "bench: pair $pair geokv load --batch $b: $r puts/s" >&2
	done
	geokv_group_stop
	if [ $ETCD_OK = 1 ]; then
		etcd_group
		read -r p50 p99 rate <<<"$(python3 "$DRIVE" etcd seq "$(eaddr "$ELEADER")" "$nseq" 100)"
		rec "etcd seq_p50 $p50"; rec "etcd seq_p99 $p99"; rec "etcd seq_rate $rate"
		# 4 client processes share the connections and the puts
		procs=4; [ "$conns" -lt 4 ] && procs=$conns
		# they connect first, then all start at t0 (wall clock); the rate runs to the last end
		t0=$(python3 -c 'import time; print("%.6f" % (time.time() + 1.5))')
		cpids=()
		for c in $(seq 1 $procs); do
			python3 "$DRIVE" etcd conc "$EALL" $((nputs / procs)) 100 $((conns / procs)) "$t0" >"$tmp/ec$c" &
			cpids+=($!)
		done
		for p in "${cpids[@]}"; do wait "$p"; done
		t1=$(cat "$tmp"/ec[0-9]* | awk '$4 > m { m = $4 } END { printf "%.6f", m }')
		tput=$(python3 -c "print(round($((nputs / procs * procs))/($t1-$t0), 1))")
		cp99=$(cat "$tmp"/ec[0-9]* | awk '$2 > m { m = $2 } END { print m }')
		errs=$(cat "$tmp"/ec[0-9]* | awk '{ e += $3 } END { print e }')
		rec "etcd conc_rate $tput"; rec "etcd conc_p99 $cp99"
		echo "bench: pair $pair etcd: sequential p50 $p50 ms p99 $p99 ms ($rate/s); $conns in flight: $tput puts/s p99 $cp99 ms (worst client) errors $errs" >&2
		etcd_group_stop
	fi
done
echo "metric replicated_put.loadavg1.end $(cut -d' ' -f1 /proc/loadavg) load"

python3 - "$results" "$smoke" "$nseq" "$nputs" "$conns" <<'PY'
import statistics as st, sys
from collections import defaultdict
res = defaultdict(list)
for line in open(sys.argv[1]):
    s, m, v = line.split()
    res[(s, m)].append(float(v))
smoke, nseq, nputs, conns = sys.argv[2:]
units = dict(seq_p50="ms", seq_p99="ms", seq_rate="puts/s", conc_rate="puts/s", conc_p99="ms",
             cli_load_b1="puts/s", cli_load_b1000="puts/s")
def out(name, v, unit): print(f"metric {name} {v:.4g} {unit}")
rat = {}
for m, u in units.items():
    for s in ("geokv", "etcd"):
        if res[(s, m)]:
            out(f"replicated_put.{s}.{m}", st.median(res[(s, m)]), u)
    r = [a / b for a, b in zip(res[("geokv", m)], res[("etcd", m)]) if a > 0 and b > 0]
    if r:
        rat[m] = st.median(r)
        out(f"replicated_put.{m}.ratio_vs_etcd", rat[m], "x")
        out(f"replicated_put.{m}.ratio_vs_etcd_min", min(r), "x")
        out(f"replicated_put.{m}.ratio_vs_etcd_max", max(r), "x")
g = lambda m: st.median(res[("geokv", m)]) if res[("geokv", m)] else float("nan")
f = lambda m: "%.2fx" % rat[m] if m in rat else "n/a"
print(f"summary: replicated put geokv/etcd{' SMOKE' if smoke == '1' else ''} "
      f"(seq={nseq}, puts={nputs}, {conns} in flight): sequential p50 {g('seq_p50'):.2f} ms "
      f"({f('seq_p50')}, lower is better), p99 {f('seq_p99')}; concurrent "
      f"{g('conc_rate'):.0f} puts/s ({f('conc_rate')} etcd), p99 {f('conc_p99')}; "
      f"geokv load --batch 1000 {g('cli_load_b1000'):.0f} puts/s")
PY
