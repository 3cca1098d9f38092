#!/usr/bin/env bash
# Hardening of geokv-primary's client listener (issue 9, items 1 and 5): what a peer can make
# the daemon hold without sending whole frames, how long a frame may take to arrive, and the
# strictness of HELLO. Raw frames via tests/integration/rawclient.py. Emits TAP; the "#"
# lines give the measured figures next to those of the code before this work.
#
#   hardening.sh GEOKV_PRIMARY RAWCLIENT_PY [GEOKV_CLI]
#
# (a) connections that never send HELLO announce 62 MiB frames (also with a token-file):
#     each is refused at the header with a typed error, the daemon's peak RSS stays small;
# (b) 50 sessions each send 8 MiB of a 60 MiB frame and stall: the read budget bounds the
#     daemon's memory, the excess connections get PROTO_EBUSY and are closed, counted;
# (c) a peer dribbling a frame a byte every 500 ms is cut by the frame deadline (and a big
#     frame sent slowly but steadily is not);
# (d) a second HELLO closes the session; a HELLO with role 99 is refused;
# (e) big frames and pipelined loads still work.
#
# Every daemon runs on a free loopback port (tests/lib/harness.sh) under a temp dir; every
# process this script started is killed by pid on exit, also on failure.
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
RAW=$2
CLI=${3:-}
MiB=$((1 << 20))

# start NAME ARGS...: a daemon of cluster "hard" on a fresh data dir, /metrics on MADDR;
# sets PID, ADDR, LOG, MADDR
start() {
	MADDR=127.0.0.1:$(free_port)
	spawn_primary "$1" "$TMP/$1" --cluster-id hard --metrics-listen "$MADDR" "${@:2}"
}
raw() { GEOKV_CLUSTER=hard python3 "$RAW" "$ADDR" "$@"; }
# mem FIELD: the daemon's VmRSS or VmHWM, MiB
mem() { awk -v k="$1:" '$1 == k { print int($2 / 1024) }' "/proc/$PID/status"; }
scrape() { python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://$MADDR/metrics', timeout=10).read().decode())" >"$1"; }
# metric FILE 'name{labels}': the sample's value (empty when absent)
metric() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
# is NAME FILE 'name{labels}' VALUE
is() { local v; v=$(metric "$2" "$3"); if [ "$v" = "$4" ]; then ok "$1"; else fail "$1" "$3 = '$v', want $4"; fi; }
# below NAME VALUE LIMIT
below() { if [ -n "$2" ] && [ "$2" -lt "$3" ]; then ok "$1 ($2 < $3)"; else fail "$1" "got '$2', want < $3"; fi; }
# in_range NAME VALUE LO HI
in_range() {
	if [ "$2" -ge "$3" ] && [ "$2" -le "$4" ]; then ok "$1 ($2 ms)"; else fail "$1" "got $2 ms, want $3..$4"; fi
}
# flood NAME ARGS...: `rawclient.py flood ARGS` in the background, waited for until it holds
# its connections open; FPID is its pid, FOUT its summary line
flood() {
	local name=$1; shift
	spawn "$name" env GEOKV_CLUSTER=hard python3 "$RAW" "$ADDR" flood "$@"
	FPID=$SPAWNED
	if wait_until 240 grep -q '^holding' "$TMP/$name.log"; then
		FOUT=$(grep '^flood ' "$TMP/$name.log")
	else
		FOUT="never held: $(head -c 300 "$TMP/$name.log")"
	fi
}
unflood() { kill "$FPID" 2>/dev/null; wait "$FPID" 2>/dev/null; }

# Sanitizer builds carry shadow memory and a quarantine of freed blocks.
ASAN=0
ldd "$PRIM" 2>/dev/null | grep -q libasan && ASAN=1
PRE_LIMIT=$((ASAN ? 200 : 100))   # MiB, peak RSS with 40 pre-HELLO floods
BUDGET=256                        # MiB, prim__read_budget at the default max-frame
SESSION_LIMIT=$((BUDGET + (ASAN ? 320 : 64)))

TOK=$TMP/token
printf 'hardening-token\n' >"$TOK"
chmod 600 "$TOK"

tap_start

# ---- (a) memory pinned before HELLO ------------------------------------------------------------
# Before: the daemon reserved whatever length a header announced, whatever the session state,
# and buffered it: 40 such connections took it from 2 MiB to 2483 MiB RSS here (2.49 GB in
# the issue), with a token-file too; nothing was refused before the payload was in.
for mode in open token; do
	args=()
	[ "$mode" = token ] && args=(--token-file "$TOK")
	if start "prehello-$mode" "${args[@]}"; then
		ok "daemon starts ($mode)"
	else
		fail "daemon starts ($mode)" "$(tail -5 "$TMP/prehello-$mode.log")"
		continue
	fi
	rss0=$(mem VmRSS)
	flood "flood-req-$mode" req 40 $((62 * MiB)) $((62 * MiB - 1)) 60
	rss1=$(mem VmRSS)
	expect "40 REQs before HELLO announcing 62 MiB: each EBADMSG, closed ($mode)" \
		"conns=40 open=0 closed=40 errors=PROTO_EBADMSG:40" echo "$FOUT"
	unflood
	flood "flood-hello-$mode" hello 40 $((62 * MiB)) $((62 * MiB - 1)) 60
	rss2=$(mem VmRSS)
	expect "40 HELLO headers announcing 62 MiB: each ETOOBIG, closed ($mode)" \
		"conns=40 open=0 closed=40 errors=PROTO_ETOOBIG:40" echo "$FOUT"
	check "... naming the largest valid HELLO" grep -q "exceeds the largest valid HELLO (4357)" "$TMP/flood-hello-$mode.log"
	unflood
	hwm=$(mem VmHWM)
	echo "# (a, $mode) 2 x 40 connections without HELLO, each sending all but the last byte of a 62 MiB frame:"
	echo "#   VmRSS ${rss0} MiB at start, ${rss1} and ${rss2} MiB while held, VmHWM ${hwm} MiB (before: 2 -> 2483 MiB, all 40 held open)"
	below "peak RSS stays small without HELLO ($mode)" "$hwm" "$PRE_LIMIT"
	scrape "$TMP/m-pre-$mode"
	is "frames_rejected no_hello counted ($mode)" "$TMP/m-pre-$mode" 'geokv_primary_frames_rejected_total{reason="no_hello"}' 40
	is "frames_rejected frame_too_big counted ($mode)" "$TMP/m-pre-$mode" 'geokv_primary_frames_rejected_total{reason="frame_too_big"}' 40
	expect "still serving after the floods ($mode)" "revision=" env GEOKV_TOKEN=hardening-token GEOKV_CLUSTER=hard python3 "$RAW" "$ADDR" status
	stop "$PID"
	check "clean exit ($mode)" [ "$RC" -eq 0 ]
done

# ---- (b) the read budget after HELLO ---------------------------------------------------------------
# Before: the whole announced length was reserved at once and filled as it came; 50 sessions
# x 8 MiB of a 60 MiB frame held 403 MiB, none refused (and nothing stopped 500 of them).
if start budget --token-file "$TOK"; then
	ok "daemon starts (budget)"
	rss0=$(mem VmRSS)
	GEOKV_TOKEN=hardening-token flood flood-session session 50 $((60 * MiB)) $((8 * MiB)) 60
	rss1=$(mem VmRSS)
	scrape "$TMP/m-budget-held"
	unflood
	hwm=$(mem VmHWM)
	held=$(sed -n 's/.* open=\([0-9]*\) .*/\1/p' <<<"$FOUT")
	refused=$(sed -n 's/.*errors=PROTO_EBUSY:\([0-9]*\)$/\1/p' <<<"$FOUT")
	echo "# (b) 50 sessions x 8 MiB of a 60 MiB frame: ${held:-?} held, ${refused:-0} refused PROTO_EBUSY;"
	echo "#   VmRSS ${rss0} MiB at start, ${rss1} MiB while held, VmHWM ${hwm} MiB (before: 403 MiB, none refused)"
	echo "#   flood: $FOUT"
	below "peak RSS bounded by the ${BUDGET} MiB read budget" "$hwm" "$SESSION_LIMIT"
	if [ -n "$held" ] && [ -n "$refused" ] && [ "$held" -ge 8 ] && [ "$refused" -ge 1 ] &&
		[ $((held + refused)) -eq 50 ]; then
		ok "the budget serves some ($held) and refuses the excess ($refused) with PROTO_EBUSY"
	else
		fail "the budget serves some and refuses the excess with PROTO_EBUSY" "$FOUT"
	fi
	check "... with a clear message" grep -q "server busy: incomplete frames hold .* MiB of read buffers (budget ${BUDGET} MiB); retry later" "$TMP/flood-session.log"
	check "... and a WARN line" grep -q "WARN server read budget exhausted, closing peer=" "$LOG"
	is "frames_rejected memory counts them" "$TMP/m-budget-held" 'geokv_primary_frames_rejected_total{reason="memory"}' "${refused:-x}"
	v=$(metric "$TMP/m-budget-held" geokv_primary_read_buffer_bytes)
	cap=$(metric "$TMP/m-budget-held" geokv_primary_read_buffer_budget_bytes)
	if [ -n "$v" ] && [ -n "$cap" ] && [ "$v" -gt 0 ] && [ "$v" -le "$cap" ]; then
		ok "read_buffer_bytes within read_buffer_budget_bytes while held ($v <= $cap)"
	else
		fail "read_buffer_bytes within read_buffer_budget_bytes while held" "got '$v', budget '$cap'"
	fi
	is "read_buffer_budget_bytes is 256 MiB" "$TMP/m-budget-held" geokv_primary_read_buffer_budget_bytes $((BUDGET * MiB))
	released() { scrape "$TMP/m-budget-after" && [ "$(metric "$TMP/m-budget-after" geokv_primary_read_buffer_bytes)" = 0 ]; }
	check "the budget is given back when the connections close" wait_until 10 released
	GEOKV_TOKEN=hardening-token raw bucket-add big $((64 * MiB - 4096)) >/dev/null
	expect "a 7 MiB PUT after the flood" "verified=$((7 * MiB))" env GEOKV_TOKEN=hardening-token GEOKV_CLUSTER=hard python3 "$RAW" "$ADDR" bigput big seven $((7 * MiB))
	stop "$PID"
	check "clean exit (budget)" [ "$RC" -eq 0 ]
else
	fail "daemon starts (budget)" "$(tail -5 "$TMP/budget.log")"
fi

# ---- (c) the frame deadline, (d) HELLO strictness, (e) big frames and loads -------------------
if start deadline --hello-timeout-ms 2000 --idle-timeout-ms 60000; then
	ok "daemon starts (hello-timeout 2 s, idle-timeout 60 s)"
else
	fail "daemon starts (deadline)" "$(tail -5 "$TMP/deadline.log")"
fi
raw bucket-add big $((64 * MiB - 4096)) >/dev/null
# Before: every byte reset the idle clock, so the dribbler stayed open as long as it liked
# ("open sent=20" after 10 s here, against a 2 s hello-timeout and a 60 s idle-timeout).
out=$(raw dribble 500 10)
echo "# (c) a frame dribbled a byte every 500 ms: $out (before: open sent=20 after 10 s; deadline: hello-timeout 2000 ms + 1 s per 256 KiB received, swept every 500 ms)"
case "$out" in
"closed after="*) ms=${out#closed after=}; in_range "a dribbled frame is cut at its deadline" "${ms%% *}" 1900 3200 ;;
*) fail "a dribbled frame is cut at its deadline" "got: $out" ;;
esac
check "... with a WARN line" grep -q 'WARN server frame not complete in time, closing peer=.* limit_ms=2000' "$LOG"
t0=$(date +%s%N)
expect "a 4 MiB PUT sent in 8 pieces 500 ms apart (4 s > 2 s) is not cut" "rev=" raw slowput big slow $((4 * MiB)) 8 500
echo "# (c) the slow 4 MiB PUT took $((($(date +%s%N) - t0) / 1000000)) ms"
expect "a session sending a STATUS every 200 ms stays open" "open answered=" raw busy 3 200

expect "(d) a second HELLO: EBADMSG, closed" "PROTO_EBADMSG(-30201) session already open closed" raw raw-dup-hello
expect "(d) a HELLO with role 99: EBADMSG, closed" "PROTO_EBADMSG(-30201) unknown role 99 in HELLO closed" raw raw-badrole
expect "(d) a plain HELLO still opens a session" "type=2 open" raw raw-hello

# (e) PROTO_MAX_VALUE allows 64 MiB - 4 KiB; the read path must take such frames whole. The
# Raft arena (raft max_unstable_bytes, 8 MiB) then refuses an entry over it with
# PROTO_ETOOBIG: not this work's to change, so either answer counts, a memory refusal not.
for size in 16 60; do
	out=$(raw bigput big big$size $((size * MiB)))
	echo "# (e) a ${size} MiB PUT: $out"
	case "$out" in
	"rev="*"verified=$((size * MiB))"|*"PROTO_ETOOBIG(-30202) frame or field too large"*) ok "(e) a ${size} MiB frame is read whole and answered" ;;
	*) fail "(e) a ${size} MiB frame is read whole and answered" "got: $out" ;;
	esac
done
expect "(e) a 7 MiB value: PUT and read back" "verified=$((7 * MiB))" raw bigput big seven $((7 * MiB))
expect "(e) a pipelined load of 5000 puts" "acked=5000 errors=0" raw load big 5000 100 "$TMP/acks"
if [ -n "$CLI" ] && [ -x "$CLI" ]; then
	python3 -c "
import sys
with open(sys.argv[1], 'w') as f:
    for i in range(20000):
        f.write('card.%06d\t%s\n' % (i, 'v' * 200))" "$TMP/load.tsv"
	expect "(e) geokv load of 20000 keys" "loaded 20000 keys" "$CLI" -s "$ADDR" load big "$TMP/load.tsv"
else
	skip "(e) geokv load" "geokv CLI not built"
fi
scrape "$TMP/m-deadline"
is "timed_out reason=frame counts the dribbler" "$TMP/m-deadline" 'geokv_primary_connections_timed_out_total{reason="frame"}' 1
is "frames_rejected duplicate_hello" "$TMP/m-deadline" 'geokv_primary_frames_rejected_total{reason="duplicate_hello"}' 1
is "frames_rejected role" "$TMP/m-deadline" 'geokv_primary_frames_rejected_total{reason="role"}' 1
is "frames_rejected memory: none for honest traffic" "$TMP/m-deadline" 'geokv_primary_frames_rejected_total{reason="memory"}' 0
echo "# (e) VmHWM after the big frames and loads: $(mem VmHWM) MiB"
stop "$PID"
check "clean exit (deadline)" [ "$RC" -eq 0 ]

tap_end
