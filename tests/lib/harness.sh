# Shared harness for geokv's shell tests: TAP output, free loopback ports, and processes that
# are always stopped by pid. Source it; it sets an EXIT trap.
#
#   . "$(dirname "$0")/../lib/harness.sh"
#   tap_start
#   spawn NAME CMD ARGS...       # background process; pid in $SPAWNED, log in $TMP/NAME.log
#   check "name" cmd args...     # ok when the command succeeds
#   expect "name" WANT cmd...    # ok when the output contains WANT
#   expect_rc "name" RC WANT cmd # ok when the command exits RC and its output contains WANT
#   run cmd...                   # OUT = stdout+stderr, RC = exit status
#   wait_until SECONDS cmd...    # poll every 50 ms until cmd succeeds
#   spawn_primary NAME DATA ARGS # $PRIM on a free port, waited for; sets PORT ADDR PID LOG
#   stop PID [SIGNAL]            # exit status in $RC
#
# Ports come from GEOKV_TEST_PORTS (default 31000-39999), picked at random, checked free by
# binding, and never handed out twice in one script (a port picked but not yet bound would
# otherwise look free again). Logs are kept in $TMP when anything failed or the script exits
# with an error.
set -uo pipefail

TMP=$(mktemp -d /tmp/geokv-test-XXXXXX)
_PIDS=()
_N=0
_FAILED=0

_cleanup() {
	local rc=$? pid
	for pid in "${_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$_FAILED" -eq 0 ] && [ "$rc" -eq 0 ]; then rm -rf "$TMP"; else echo "# logs kept in $TMP"; fi
} 2>/dev/null
trap _cleanup EXIT

tap_start() { echo "TAP version 13"; }
tap_end() { echo "1..$_N"; [ "$_FAILED" -eq 0 ]; }

ok()   { _N=$((_N + 1)); echo "ok $_N - $1"; }
fail() {
	_N=$((_N + 1)); _FAILED=$((_FAILED + 1)); echo "not ok $_N - $1"; shift
	local l; for l in "$@"; do echo "#   $l"; done
}
skip() { _N=$((_N + 1)); echo "ok $_N - $1 # SKIP $2"; }
check() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name" "command: $*"; fi; }
expect() {
	local name=$1 want=$2 out; shift 2
	out=$("$@" 2>&1)
	case "$out" in *"$want"*) ok "$name" ;; *) fail "$name" "want: $want" "got: ${out:0:400}" ;; esac
}
# run CMD...: OUT is its stdout and stderr, RC its exit status; at most RUN_TIMEOUT seconds
# when that is set
run() { OUT=$(${RUN_TIMEOUT:+timeout "$RUN_TIMEOUT"} "$@" 2>&1); RC=$?; }
# expect_rc NAME RC WANT CMD...: ok when CMD exits RC and its output contains WANT ("" = any)
expect_rc() {
	local name=$1 want_rc=$2 want=$3; shift 3
	run "$@"
	if [ "$RC" -eq "$want_rc" ] && case "$OUT" in *"$want"*) true ;; *) false ;; esac; then
		ok "$name"
	else
		fail "$name" "command: $*" "want rc=$want_rc output containing: $want" "got rc=$RC: ${OUT:0:400}"
	fi
}
wait_until() {
	local secs=$1 i; shift
	for ((i = 0; i < secs * 20; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
	return 1
}

free_port() {
	local range=${GEOKV_TEST_PORTS:-31000-39999}
	python3 - "${range%-*}" "${range#*-}" "$TMP/ports.used" <<'PY'
import random, socket, sys
lo, hi, used_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
try:
    used = set(open(used_file).read().split())
except OSError:
    used = set()
for _ in range(500):
    p = random.randint(lo, hi)
    if str(p) in used:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        with open(used_file, "a") as f:
            f.write("%d\n" % p)
        print(p); break
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
	wait "$pid"; RC=$?
} 2>/dev/null # also bash's "Killed" notice

# spawn_primary NAME DATA ARGS...: geokv-primary ($PRIM) with --data DATA on a free port, on
# LISTEN_HOST (default 127.0.0.1); log appended to $TMP/NAME.log. Sets PORT, ADDR
# (127.0.0.1:PORT), PID and LOG. Ready means its INFO "serving" line, logged once it listens
# (so TLS, tokens and cluster ids need no probe of their own; not at --log-level warn or
# error); fails when the daemon exits first or is not serving within 15 s (a replay of a large log under ASan takes a while).
spawn_primary() {
	local name=$1 data=$2 from=1 i; shift 2
	PORT=$(free_port) || return 1
	ADDR=127.0.0.1:$PORT
	LOG=$TMP/$name.log
	# only a line written after this start counts: a restart may reuse a log
	[ -e "$LOG" ] && from=$(($(stat -c %s "$LOG") + 1))
	spawn "$name" "$PRIM" --data "$data" --listen "${LISTEN_HOST:-127.0.0.1}:$PORT" "$@"
	PID=$SPAWNED
	for ((i = 0; i < 300; i++)); do
		tail -c "+$from" "$LOG" 2>/dev/null | grep -q "INFO primary serving" && return 0
		kill -0 "$PID" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
