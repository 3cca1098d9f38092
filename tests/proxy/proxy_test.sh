#!/usr/bin/env bash
# End-to-end test of geokv-proxy (tests/proxy/): every fault measured from both ends of real
# loopback connections (tests/proxy/echo.py serves the target and is the client), the control
# protocol and the `ctl` client, argument errors, bounded memory, and a clean SIGTERM. Emits TAP.
#
#   proxy_test.sh GEOKV_PROXY
#
# Every process this script starts is stopped by pid (tests/lib/harness.sh).
. "$(dirname "$0")/../lib/harness.sh"
PROXY=$1
ECHO=$(dirname "$0")/echo.py
MiB=1048576

tap_start

CPORT=$(free_port) && PA=$(free_port) && PB=$(free_port) && TA=$(free_port) && TB=$(free_port) ||
	{ fail "free ports"; tap_end; exit 1; }
CTL=127.0.0.1:$CPORT

ctl() { "$PROXY" ctl "$CTL" "$@"; }
# sc LINK SCENARIO ARGS...: echo.py through link a or b; OUT and RC as with run
sc() {
	local link=$1 pp tp; shift
	local c=$CTL
	case $link in a) pp=$PA tp=$TA ;; b) pp=$PB tp=$TB ;; c) pp=$PC tp=$TC c=$CTL2 ;; esac
	RUN_TIMEOUT=60 run python3 "$ECHO" "$@" --proxy "127.0.0.1:$pp" --target "$tp" \
		--control "$c" --link "$link"
}
# scenario NAME LINK SCENARIO ARGS...: ok when echo.py succeeds; its result line as a comment
scenario() {
	local name=$1; shift
	sc "$@"
	if [ "$RC" -eq 0 ]; then ok "$name"; echo "# $OUT"; else fail "$name" "$OUT"; fi
}
field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$OUT" | head -n 1; }
# holds "AWK CONDITION" VAR=VALUE...: true when the condition holds
# holds "AWK CONDITION" VAR=VALUE...: true when the condition holds (false when a value is
# missing, i.e. the scenario printed no such field)
holds() {
	local cond=$1 kv a=(); shift
	for kv in "$@"; do [ -n "${kv#*=}" ] || return 1; a+=(-v "$kv"); done
	awk "${a[@]}" "BEGIN { exit !($cond) }"
}
assert() { # assert NAME "AWK CONDITION" VAR=VALUE...
	local name=$1; shift
	if holds "$@"; then ok "$name"; else fail "$name" "condition: $1" "values: ${*:2}" "last output: ${OUT:0:300}"; fi
}

# ---- start -------------------------------------------------------------------------------
spawn proxy "$PROXY" --control "$CTL" --seed 42 \
	--link "a=127.0.0.1:$PA>127.0.0.1:$TA" --link "b=127.0.0.1:$PB>127.0.0.1:$TB"
PID=$SPAWNED
if wait_until 10 grep -qx "proxy ready" "$TMP/proxy.log"; then
	ok "proxy starts and prints 'proxy ready'"
else
	fail "proxy starts" "$(cat "$TMP/proxy.log")"; tap_end; exit 1
fi
expect_rc "ctl ping" 0 "ok pong" ctl ping

# ---- plain forwarding ----------------------------------------------------------------------
scenario "10 MiB up and echoed down, byte-exact, EOF both ways" a bulk $((10 * MiB))
scenario "half-close: request + EOF up, then the response down" a halfclose
scenario "nobody at the target: the client is reset" a notarget

# ---- delay and jitter --------------------------------------------------------------------------
sc a rtt 20
base=$(field median_ms)
assert "plain round trip is fast (median ${base:-?} ms)" "m < 10" m="$base"

expect_rc "delay a up 40" 0 "ok delay a up 40 0" ctl delay a up 40
sc a rtt 20
med=$(field median_ms) min=$(field min_ms)
echo "# delay up 40: $OUT"
assert "delay up 40: every round trip >= 40 ms (min $min, median $med)" "n >= 40" n="$min"
assert "delay up 40: median < 70 ms, adds $(awk -v m="$med" -v b="$base" 'BEGIN { printf "%.2f", m - b }') ms" "m < 70" m="$med"

expect_rc "delay a both 20" 0 "ok delay a both 20 0" ctl delay a both 20
sc a rtt 20
med=$(field median_ms) min=$(field min_ms)
echo "# delay both 20: $OUT"
assert "delay both 20: round trip >= 40 ms, median < 70 (min $min, median $med)" "n >= 40 && m < 70" n="$min" m="$med"

ctl delay a up 0 >/dev/null
sc a rtt 20
med=$(field median_ms) min=$(field min_ms)
echo "# delay down 20 only: $OUT"
assert "delay up 0 leaves down 20: 20 <= rtt < 50 (min $min, median $med)" "n >= 20 && m < 50" n="$min" m="$med"
expect_rc "delay a down 0 clears" 0 "ok delay a down 0 0" ctl delay a down 0
sc a rtt 20
med=$(field median_ms)
assert "after delay 0 the round trip is fast again (median $med ms)" "m < 10" m="$med"

expect_rc "delay a up 5 30 (jitter)" 0 "ok delay a up 5 30" ctl delay a up 5 30
scenario "jitter 30 ms on 1 ms-spaced messages never reorders" a order 300 1
assert "jitter: one-way latency within [5, 5+30+25) ms and varies (min $(field min_ms), max $(field max_ms))" \
	"lo >= 5 && hi < 60 && sp >= 5" lo="$(field min_ms)" hi="$(field max_ms)" sp="$(field spread_ms)"
ctl delay a both 2 10 >/dev/null
scenario "4 MiB under jitter both ways, byte-exact" a bulk $((4 * MiB))
expect_rc "clear a" 0 "ok clear a" ctl clear a

# ---- hold ------------------------------------------------------------------------------------
scenario "hold up: nothing for 300 ms, open; off delivers 20 MB in order" a hold up 20000000
held=$(field held)
assert "hold up: back-pressure keeps held at the 8 MiB cap (held $held)" "h > 0 && h <= c" h="$held" c=$((8 * MiB + 65536))
scenario "hold down: nothing for 300 ms, open; off delivers 20 MB in order" a hold down 20000000
held=$(field held)
assert "hold down: held within the cap (held $held)" "h > 0 && h <= c" h="$held" c=$((8 * MiB + 65536))

# ---- blackhole, partition, reset, corrupt ----------------------------------------------------
scenario "blackhole up: sender succeeds, nothing arrives, off flows again" a blackhole up
scenario "blackhole down: sender succeeds, nothing arrives, off flows again" a blackhole down
scenario "partition: existing connection reset, new refused, off lets new ones in" a partition
scenario "reset: both ends of a connection reset; a new one works" a reset
scenario "corrupt up 100: exactly one bit of byte 100, once" a corrupt up 100
scenario "corrupt down 1: exactly one bit of the next byte" a corrupt down 1
scenario "corrupt up 70000: across read boundaries" a corrupt up 70000

# ---- stats (link b, untouched so far) ---------------------------------------------------------
scenario "bulk 1 MiB through b" b bulk $MiB
wait_until 3 bash -c "'$PROXY' ctl '$CTL' stats b | grep -q 'conns=0 '"
expect_rc "stats b counts exactly" 0 "ok conns=0 up_bytes=$MiB down_bytes=$MiB held=0 dropped=0" ctl stats b
scenario "blackhole up through b" b blackhole up
wait_until 3 bash -c "'$PROXY' ctl '$CTL' stats b | grep -q 'conns=0 '"
# the blackhole scenario: "ping" both ways, 100000 bytes dropped, then "after" up
expect_rc "stats b counts dropped bytes" 0 \
	"ok conns=0 up_bytes=$((MiB + 9)) down_bytes=$((MiB + 4)) held=0 dropped=100000" ctl stats b
expect_rc "stats all sums the links" 0 "ok conns=0 " ctl stats all

# ---- links are independent; `all` ------------------------------------------------------------
ctl hold a both on >/dev/null
sc b rtt 10
assert "hold on a leaves b flowing (median $(field median_ms) ms)" "m < 10" m="$(field median_ms)"
expect_rc "delay all up 40" 0 "ok delay all up 40 0" ctl delay all up 40
sc b rtt 10
assert "delay all reaches b (min $(field min_ms) ms)" "n >= 40" n="$(field min_ms)"
expect_rc "clear all" 0 "ok clear all" ctl clear all
sc a rtt 10
assert "after clear all, a is plain again (median $(field median_ms) ms)" "m < 10" m="$(field median_ms)"

# ---- bad commands ------------------------------------------------------------------------------
expect_rc "unknown command"        1 "error unknown command" ctl frobnicate a
expect_rc "bad direction"          1 "error bad direction"   ctl delay a sideways 10
expect_rc "unknown link"           1 "error no link"         ctl delay nosuch up 10
expect_rc "negative delay"         1 "error bad delay"       ctl delay a up -5
expect_rc "delay over 10 minutes"  1 "error bad delay"       ctl delay a up 600001
expect_rc "bad jitter"             1 "error bad jitter"      ctl delay a up 5 x
expect_rc "bad switch"             1 "error bad switch"      ctl hold a up maybe
expect_rc "corrupt 0"              1 "error bad byte count"  ctl corrupt a up 0
expect_rc "corrupt bit 8"          1 "error bad bit"         ctl corrupt a up 5 8
expect_rc "missing argument"       1 "error usage: partition" ctl partition a
expect_rc "too many arguments"     1 "error usage: clear"    ctl clear a b
sc a ctlraw 'ping\nstats a\n\n  \nbogus\n'
case $OUT in
*"ok pong"*"ok conns="*"error unknown command 'bogus'"*"replies=3 "*) ok "pipelined lines: one reply each, none for blank lines" ;;
*) fail "pipelined lines" "$OUT" ;;
esac
sc a ctlraw "$(printf 'x%.0s' {1..3000})\\nping\\n"
case $OUT in
*"error line too long"*"ok pong"*) ok "an over-long line is an error, the next line is served" ;;
*) fail "over-long line" "$OUT" ;;
esac
expect_rc "the proxy still serves after bad commands" 0 "ok pong" ctl ping

# ---- the ctl client and argument errors ----------------------------------------------------
NOPORT=$(free_port)
expect_rc "ctl with nobody listening exits 2"  2 "connect" "$PROXY" ctl "127.0.0.1:$NOPORT" ping
expect_rc "ctl without a command exits 2"      2 "usage"   "$PROXY" ctl "$CTL"
expect_rc "no arguments exit 2"                2 "--control HOST:PORT is required" "$PROXY"
expect_rc "no link exits 2"                    2 "at least one --link" "$PROXY" --control "127.0.0.1:$NOPORT"
expect_rc "malformed link exits 2"             2 "bad --link" "$PROXY" --control "127.0.0.1:$NOPORT" --link "a=127.0.0.1:1"
expect_rc "bad port exits 2"                   2 "bad port"  "$PROXY" --control "127.0.0.1:$NOPORT" --link "a=127.0.0.1:70000>127.0.0.1:1"
expect_rc "link named all exits 2"             2 "reserved"  "$PROXY" --control "127.0.0.1:$NOPORT" --link "all=127.0.0.1:$NOPORT>127.0.0.1:1"
expect_rc "duplicate link exits 2"             2 "given twice" "$PROXY" --control "127.0.0.1:$NOPORT" \
	--link "x=127.0.0.1:$NOPORT>127.0.0.1:1" --link "x=127.0.0.1:$NOPORT>127.0.0.1:1"
expect_rc "unknown option exits 2"             2 "unknown argument" "$PROXY" --frob
RUN_TIMEOUT=10 expect_rc "a listen that fails exits 1" 1 "address already in use" \
	"$PROXY" --control "127.0.0.1:$NOPORT" --link "x=127.0.0.1:$CPORT>127.0.0.1:1"

# ---- bounded memory ------------------------------------------------------------------------------
scenario "push 200 MiB at a target that never reads" a sink $((200 * MiB)) "$PID"
pushed=$(field pushed) held=$(field held) rss=$(field rss_kb) hwm=$(field hwm_kb)
assert "back-pressure: the sender is stopped far short of 200 MiB (pushed $pushed)" "p < 64 * 1048576" p="$pushed"
assert "the stalled connection holds at most the 8 MiB cap (held $held)" "h <= c" h="$held" c=$((8 * MiB + 65536))
if [[ "$(ldd "$PROXY" 2>/dev/null)" == *libasan* ]]; then # (grep -q under pipefail: SIGPIPE)
	skip "proxy RSS stays under 64 MiB (VmRSS ${rss} KiB, VmHWM ${hwm} KiB)" "ASan's shadow and quarantine"
else
	assert "proxy RSS stays under 64 MiB (VmRSS ${rss} KiB, VmHWM ${hwm} KiB)" "r < 65536 && w < 65536" r="$rss" w="$hwm"
fi

# ---- the global cap: a second proxy whose queues together may hold only 4 MiB -------------------
CPORT2=$(free_port) PC=$(free_port) TC=$(free_port)
CTL2=127.0.0.1:$CPORT2
spawn proxy2 "$PROXY" --control "$CTL2" --max-memory 4M --link "c=127.0.0.1:$PC>127.0.0.1:$TC"
PID2=$SPAWNED
if wait_until 10 grep -qx "proxy ready" "$TMP/proxy2.log"; then ok "a proxy with --max-memory 4M starts"
else fail "proxy with --max-memory" "$(cat "$TMP/proxy2.log")"; fi
scenario "under the global cap, hold up then off still delivers 20 MB in order" c hold up 20000000
held=$(field held)
assert "held stops at the global 4 MiB cap (held $held)" "h > 0 && h <= c" h="$held" c=$((4 * MiB + 65536))
scenario "and the link forwards plainly afterwards" c bulk $((2 * MiB))
stop "$PID2"
if [ "$RC" -eq 0 ]; then ok "second proxy: SIGTERM exit 0"; else fail "second proxy SIGTERM" "rc=$RC"; fi

# ---- SIGTERM with connections open and bytes held -------------------------------------------
ctl hold a both on >/dev/null
spawn idle python3 "$ECHO" idle --proxy "127.0.0.1:$PA" --target "$TA" --control "$CTL" --link a
IDLE=$SPAWNED
if wait_until 10 bash -c "'$PROXY' ctl '$CTL' stats a | grep -q 'conns=1 .*held=2097152 '"; then
	ok "a held connection is open with 2 MiB queued"
else
	fail "held connection" "$(ctl stats a)" "$(cat "$TMP/idle.log")"
fi
stop "$PID"
if [ "$RC" -eq 0 ] && grep -q "INFO proxy stopped" "$TMP/proxy.log"; then
	ok "SIGTERM: exit 0 with connections open"
else
	fail "SIGTERM exit" "rc=$RC" "$(tail -n 5 "$TMP/proxy.log")"
fi
if grep -q "handles left\|ERROR" "$TMP/proxy.log"; then
	fail "clean shutdown" "$(grep "handles left\|ERROR" "$TMP/proxy.log" | head -n 5)"
else
	ok "clean shutdown: no handle left, no error logged"
fi
stop "$IDLE" KILL

tap_end
