#!/usr/bin/env bash
# Store benchmark (BENCH.md, workload "store"): N random 100-byte puts in batches of 1,000
# through kv_apply (one log entry = one BATCH op of 1,000 PUTs), against a bare LMDB loop
# doing the same puts (same key and value bytes, one txn per 1,000, MDB_NOSYNC on both,
# same initial map size), alternating A B A B; then random point reads of those keys, each
# in its own renewed read txn, through kv_get and through mdb_get.
#
#   tests/bench/store.sh            1,000,000 puts, 5 pairs (a few minutes)
#   tests/bench/store.sh --smoke    tiny sizes, 3 pairs: proves the script and binary work
#
# Options: --bin PATH (store_bench binary), --pairs N, --n N, --gets N.
# Env: BUILD_DIR (default build), TMPDIR.
# Prints "metric <name> <value> <unit>" lines and a one-line summary. Never asserts a time.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=1000000 BATCH=1000 PAIRS=5 GETS=1000000 BIN=""
while [ $# -gt 0 ]; do
	case "$1" in
	--smoke) N=20000 PAIRS=3 GETS=50000 ;;
	--bin) BIN=$2; shift ;;
	--pairs) PAIRS=$2; shift ;;
	--n) N=$2; shift ;;
	--gets) GETS=$2; shift ;;
	-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
	*) echo "store.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

if [ -z "$BIN" ]; then
	build=${BUILD_DIR:-build}
	BIN=$build/tests/core/store_bench
	if [ ! -x "$BIN" ]; then
		[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
		ninja -C "$build" tests/core/store_bench >/dev/null
	fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/geokv-bench-store.XXXXXX")
trap 'rm -rf "$work"' EXIT

# run SIDE -> prints "put_rate get_rate bytes_per_key"
run() {
	local dir=$work/$1.$2
	mkdir -p "$dir"
	"$BIN" "$1" "$dir" "$N" "$BATCH" "$GETS" |
		awk '{v[$1]=$2} END {print v["put_rate"], v["get_rate"], v["bytes_per_key"]}'
	rm -rf "$dir"
}

results=()
for i in $(seq 1 "$PAIRS"); do
	read -r kp kg kb < <(run kv "$i")
	read -r lp lg lb < <(run lmdb "$i")
	echo "pair $i: store put $kp/s get $kg/s | lmdb put $lp/s get $lg/s" >&2
	results+=("$kp $kg $kb $lp $lg $lb")
done

printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
put_r = [r[0] / r[3] for r in rows]
get_r = [r[1] / r[4] for r in rows]
med = statistics.median
print("metric store.put.ratio_vs_lmdb %.2f x" % med(put_r))
print("metric store.put.ratio_vs_lmdb.min %.2f x" % min(put_r))
print("metric store.put.ratio_vs_lmdb.max %.2f x" % max(put_r))
print("metric store.put.rate %.0f puts/s" % med([r[0] for r in rows]))
print("metric lmdb.put.rate %.0f puts/s" % med([r[3] for r in rows]))
print("metric store.get.rate %.0f reads/s" % med([r[1] for r in rows]))
print("metric lmdb.get.rate %.0f reads/s" % med([r[4] for r in rows]))
print("metric store.get.ratio_vs_lmdb %.2f x" % med(get_r))
print("metric store.disk.bytes_per_key %.0f B" % med([r[2] for r in rows]))
print("metric lmdb.disk.bytes_per_key %.0f B" % med([r[5] for r in rows]))
print("store: %d pairs of %d puts: put ratio vs bare LMDB %.2f (%.2f-%.2f), %.0f puts/s; "
      "get %.0f reads/s (%.2f of LMDB); %.0f B/key on disk"
      % (len(rows), '"$N"', med(put_r), min(put_r), max(put_r), med([r[0] for r in rows]),
         med([r[1] for r in rows]), med(get_r), med([r[2] for r in rows])))
'
