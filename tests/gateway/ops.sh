#!/usr/bin/env bash
# geokv-gateway operations (issue 9): /healthz on a store that never received data (a real
# geokv-primary, and a static store), a node not yet caught up, refusing to start when LMDB
# readers cannot register in a read-only lock.mdb, and /metrics on its own listener or off
# the public port. Emits TAP.
#
#   ops.sh GATEWAY FIXTURE CERTS_SH [GEOKV_PRIMARY GEOKV_CLI]
#
# Every process started here is stopped by pid on exit (tests/lib/harness.sh); the read-only
# mount is made and removed here, and the cases needing it SKIP when mounting is impossible.
. "$(dirname "$0")/../lib/harness.sh"
GW=$1
FX=$2
CERTS=$3
PRIM=${4:-}
CLI=${5:-}
RUN_TIMEOUT=20
MNT=""

umount_ro() { [ -n "$MNT" ] && umount "$MNT" 2>/dev/null; MNT=""; }
trap 'rc=$?; umount_ro; (exit $rc); _cleanup' EXIT

tap_start
"$CERTS" "$TMP/certs" >/dev/null || { echo "Bail out! certs.sh failed"; exit 1; }

port_open() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null; }
# gateway NAME ARGS...: start geokv-gateway on a free port (GWP), wait until it listens;
# GWPID is its pid, its log is $TMP/NAME.log
gateway() {
	local name=$1; shift
	GWP=$(free_port) || return 1
	spawn "$name" "$GW" --listen "127.0.0.1:$GWP" --workers 1 "$@"
	GWPID=$SPAWNED
	wait_until 10 port_open "$GWP" && return 0
	echo "# gateway $name did not start:"; sed 's/^/#   /' "$TMP/$name.log"
	return 1
}
# hz URL: GET /healthz; HZ_CODE, HZ_BODY
hz() { HZ_BODY=$(curl -s --cacert "$TMP/certs/ca.crt" --max-time 5 -w '\n%{http_code}' "$1/healthz"); HZ_CODE=${HZ_BODY##*$'\n'}; HZ_BODY=${HZ_BODY%$'\n'*}; }
hz_is() { hz "$1"; [ "$HZ_CODE" = "$2" ] && case "$HZ_BODY" in *"$3"*) true ;; *) false ;; esac; }
# expect_hz NAME URL CODE BODY-PART: /healthz answers CODE with BODY-PART in its JSON
expect_hz() {
	if hz_is "$2" "$3" "$4"; then ok "$1"; else fail "$1" "want $3 with $4" "got $HZ_CODE $HZ_BODY"; fi
}
code() { curl -s --cacert "$TMP/certs/ca.crt" --max-time 5 -o /dev/null -w '%{http_code}' "$@"; }

# ---- /healthz over a fresh, empty primary store -------------------------------------------
if [ -n "$PRIM" ] && [ -x "$PRIM" ] && [ -n "$CLI" ] && [ -x "$CLI" ]; then
	if spawn_primary primary "$TMP/p1" --cluster-id gwops; then
		PADDR=$ADDR
		if gateway gw-empty --data "$TMP/p1/state" --plain; then
			U=http://127.0.0.1:$GWP
			# Until the gateway has mapped the status page and the member has elected itself
			# the reason is "no node status" / "no leader"; then it is about the store.
			settled() { hz "$U"; case "$HZ_BODY" in *'"role":"primary"'*) case "$HZ_BODY" in *'no leader'*) false ;; *) true ;; esac ;; *) false ;; esac; }
			wait_until 15 settled
			expect_hz "fresh empty primary store: /healthz 503, reason empty store" "$U" 503 '"reason":"empty store"'
			expect_hz "  ... the body still carries the node's revision 0" "$U" 503 '"revision":0'
			expect_rc "one write to the primary (bucket add)" 0 "" "$CLI" -s "$PADDR" bucket add cards
			wait_until 5 hz_is "$U" 200 '"status":"ok"'
			expect_hz "after the first write: /healthz 200" "$U" 200 '"status":"ok","role":"primary"'
			expect_rc "a put" 0 "" "$CLI" -s "$PADDR" put cards k1 v1
			wait_until 5 test "$(curl -s "$U/kv/k1?bucket=cards")" = v1
			expect "the gateway serves it" v1 curl -s "$U/kv/k1?bucket=cards"
			stop "$GWPID"
		else
			fail "gateway over the primary's store starts"
		fi
		stop "$PID"
	else
		fail "geokv-primary starts" "$(tail -n 5 "$TMP/primary.log")"
	fi
else
	skip "fresh empty primary store: /healthz 503" "geokv-primary or geokv CLI not built"
fi

# ---- a static store (no node status page): empty is unhealthy too -------------------------
"$FX" init "$TMP/static" >/dev/null || { echo "Bail out! fixture init failed"; exit 1; }
if gateway gw-static --data "$TMP/static" --plain --set health.require_node=false; then
	U=http://127.0.0.1:$GWP
	expect_hz "static empty store (require_node=false): /healthz 503 empty store" "$U" 503 '"reason":"empty store"'
	check "  ... /livez stays 200 (liveness only)" test "$(code "$U/livez")" = 200
	"$FX" put "$TMP/static" default hello world >/dev/null
	expect_hz "after one write: /healthz 200" "$U" 200 '"status":"ok"'
	stop "$GWPID"
else
	fail "gateway over a static store starts"
fi

# ---- a node that has data but has not caught up since it started --------------------------
mkdir -p "$TMP/leaf"
"$FX" load "$TMP/leaf" default 10 10 >/dev/null
spawn node-uncaught "$FX" node "$TMP/leaf" leaf 5 0 0 # lag 5 entries: within the bounds
NODEPID=$SPAWNED
if gateway gw-leaf --data "$TMP/leaf" --plain; then
	U=http://127.0.0.1:$GWP
	wait_until 5 hz_is "$U" 503 '"role":"leaf"'
	expect_hz "node with data, lag within bounds, not caught up yet: /healthz 503" "$U" 503 '"reason":"not caught up"'
	stop "$NODEPID"
	spawn node-caught "$FX" node "$TMP/leaf" leaf 5 0 1
	NODEPID=$SPAWNED
	wait_until 5 hz_is "$U" 200 '"status":"ok"'
	expect_hz "once it has caught up: /healthz 200" "$U" 200 '"status":"ok","role":"leaf"'
	stop "$NODEPID"
	stop "$GWPID"
else
	fail "gateway over the leaf fixture starts"
fi

# ---- read-only lock.mdb: the gateway must refuse to start ---------------------------------
mkdir -p "$TMP/rosrc" "$TMP/ro"
"$FX" put "$TMP/rosrc" default hello world >/dev/null
why=""
if [ "$(id -u)" != 0 ]; then
	why="not root: cannot bind-mount"
elif ! mount --bind "$TMP/rosrc" "$TMP/ro" 2>"$TMP/mount.err"; then
	why="mount --bind failed: $(head -c 200 "$TMP/mount.err")"
else
	MNT=$TMP/ro
	if ! mount -o remount,ro,bind "$TMP/ro" 2>"$TMP/mount.err"; then
		why="remount read-only failed: $(head -c 200 "$TMP/mount.err")"
		umount_ro
	elif touch "$TMP/ro/lock.mdb" 2>/dev/null; then
		why="the read-only mount is writable here"
		umount_ro
	fi
fi
if [ -z "$why" ]; then
	RP=$(free_port)
	run timeout 10 "$GW" --data "$TMP/ro" --plain --listen "127.0.0.1:$RP" --workers 1 \
		--set health.require_node=false
	if [ "$RC" -ne 0 ] && [ "$RC" -ne 124 ] &&
	   case "$OUT" in *"store readers cannot register, refusing to start"*"lock.mdb"*) true ;; *) false ;; esac; then
		ok "read-only lock.mdb (read-only bind mount of state/): exits $RC with the reason"
	else
		fail "read-only lock.mdb (read-only bind mount of state/): exits non-zero with the reason" \
			"rc=$RC (124 = still serving after 10 s)" "${OUT:0:400}"
	fi
	check "  ... and the message says what to fix" grep -q "needs write access to lock.mdb" <<<"$OUT"
	umount_ro
	if gateway gw-rw --data "$TMP/rosrc" --plain --set health.require_node=false; then
		check "the same store mounted read-write: starts and serves" test "$(curl -s "http://127.0.0.1:$GWP/kv/hello")" = world
		stop "$GWPID"
	else
		fail "the same store mounted read-write: starts"
	fi
else
	skip "read-only lock.mdb: the gateway refuses to start" "$why"
fi

# ---- /metrics: its own listener, off the public port by default ---------------------------
mkdir -p "$TMP/m"
"$FX" put "$TMP/m" default hello world >/dev/null
TLS=(--cert "$TMP/certs/server.crt" --key "$TMP/certs/server.key" --set health.require_node=false)
MP=$(free_port)
if gateway gw-metrics --data "$TMP/m" "${TLS[@]}" --metrics-listen "127.0.0.1:$MP"; then
	U=https://127.0.0.1:$GWP
	wait_until 5 port_open "$MP"
	check "public HTTPS port: /kv still served" test "$(code "$U/kv/hello")" = 200
	check "public HTTPS port: /metrics 404 by default (metrics_on_public = false)" test "$(code "$U/metrics")" = 404
	check "metrics listener (plain HTTP): /metrics 200" test "$(code "http://127.0.0.1:$MP/metrics")" = 200
	expect "  ... Prometheus text with the public port's requests" 'geokv_gateway_requests_total{route="kv",status="200"} 1' \
		curl -s "http://127.0.0.1:$MP/metrics"
	expect "  ... the refused public /metrics counted as route other, 404" 'geokv_gateway_requests_total{route="other",status="404"} 1' \
		curl -s "http://127.0.0.1:$MP/metrics"
	check "metrics listener: HEAD /metrics 200" test "$(code -I "http://127.0.0.1:$MP/metrics")" = 200
	check "metrics listener: /kv/hello 404 (only /metrics there)" test "$(code "http://127.0.0.1:$MP/kv/hello")" = 404
	check "metrics listener: /healthz 404" test "$(code "http://127.0.0.1:$MP/healthz")" = 404
	check "the metrics listener is logged" grep -q "INFO gateway metrics listening addr=127.0.0.1:$MP tls=off public=off" "$TMP/gw-metrics.log"
	stop "$GWPID"
	check "SIGTERM with a metrics listener: exits 0" test "$RC" = 0
else
	fail "gateway with --metrics-listen starts"
fi
if gateway gw-metrics-public --data "$TMP/m" "${TLS[@]}" --metrics-on-public; then
	check "--metrics-on-public: /metrics 200 on the HTTPS port" test "$(code "https://127.0.0.1:$GWP/metrics")" = 200
	stop "$GWPID"
else
	fail "gateway with --metrics-on-public starts"
fi
if gateway gw-metrics-off --data "$TMP/m" "${TLS[@]}"; then
	check "neither setting: /metrics 404" test "$(code "https://127.0.0.1:$GWP/metrics")" = 404
	check "  ... and the log says how to turn it on" grep -q "metrics not served" "$TMP/gw-metrics-off.log"
	stop "$GWPID"
else
	fail "gateway without metrics starts"
fi
BUSY=$(free_port)
python3 -c "
import socket, subprocess, sys
s = socket.socket(); s.bind(('127.0.0.1', $BUSY)); s.listen()
r = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=20)
print(r.returncode); print(r.stderr)
" "$GW" --data "$TMP/m" --plain --listen "127.0.0.1:$(free_port)" --workers 2 \
	--metrics-listen "127.0.0.1:$BUSY" >"$TMP/busy.out" 2>&1
check "metrics port in use: exits 1 with 'cannot listen' (no crash)" \
	bash -c "head -n 1 '$TMP/busy.out' | grep -qx 1 && grep -q 'cannot listen addr=127.0.0.1:$BUSY' '$TMP/busy.out'"
expect_rc "a bad metrics_listen is a usage error" 2 "gateway.metrics_listen" \
	"$GW" --data "$TMP/m" --plain --metrics-listen nonsense

check "no ERROR or sanitizer lines in the serving gateways' logs" \
	bash -c "! cat '$TMP'/gw-*.log | grep -E ' ERROR |AddressSanitizer|LeakSanitizer|runtime error'"
tap_end
