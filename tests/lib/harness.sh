# Shared harness for geokv's shell tests: TAP output, free loopback ports, and processes that
# are always stopped by pid. Source it; it sets an EXIT trap.
#
#   . "$(dirname "$0")/../lib/harness.sh"
#   tap_start
#   spawn NAME CMD ARGS...       # background process; pid in $SPAWNED, log in $TMP/NAME.log
#   check "name" cmd args...     # ok when the command succeeds
#   expect "name" WANT cmd...    # ok when the output contains WANT
#   wait_until SECONDS cmd...    # poll every 50 ms until cmd succeeds
#
# Ports come from GEOKV_TEST_PORTS (default 31000-39999), picked at random and checked free
# by binding; logs are kept in $TMP when anything failed.
set -uo pipefail

TMP=$(mktemp -d /tmp/geokv-test-XXXXXX)
_PIDS=()
_N=0
_FAILED=0

_cleanup() {
	local pid
	for pid in "${_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$_FAILED" -eq 0 ]; then rm -rf "$TMP"; else echo "# logs kept in $TMP"; fi
}
trap _cleanup EXIT

tap_start() { echo "TAP version 13"; }
tap_end() { echo "1..$_N"; [ "$_FAILED" -eq 0 ]; }

ok()   { _N=$((_N + 1)); echo "ok $_N - $1"; }
fail() {
	_N=$((_N + 1)); _FAILED=$((_FAILED + 1)); echo "not ok $_N - $1"; shift
	local l; for l in "$@"; do echo "#   $l"; done
}
check() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name" "command: $*"; fi; }
expect() {
	local name=$1 want=$2 out; shift 2
	out=$("$@" 2>&1)
	case "$out" in *"$want"*) ok "$name" ;; *) fail "$name" "want: $want" "got: ${out:0:400}" ;; esac
}
wait_until() {
	local secs=$1 i; shift
	for ((i = 0; i < secs * 20; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
	return 1
}

free_port() {
	local range=${GEOKV_TEST_PORTS:-31000-39999}
	python3 - "${range%-*}" "${range#*-}" <<'PY'
import random, socket, sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
for _ in range(500):
    p = random.randint(lo, hi)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
else:
    sys.exit("no free port in %d-%d" % (lo, hi))
PY
}

spawn() {
	local name=$1; shift
	"$@" >>"$TMP/$name.log" 2>&1 &
	SPAWNED=$!
	_PIDS+=("$SPAWNED")
}

# stop PID [SIGNAL]: signal (TERM by default), wait up to 10 s; exit status in $RC
stop() {
	local pid=$1 sig=${2:-TERM} i
	kill -"$sig" "$pid" 2>/dev/null
	for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null; RC=$?
}
