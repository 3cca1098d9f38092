#!/usr/bin/env bash
# Propagation: for each write, the time from the publisher's acknowledgement to the value
# being readable at the leaf's gateway (tests/bench/propagate.c measures it, see there: it
# includes one loopback HTTP round trip and the gateway's 1 ms ?min_rev poll).
#
#   propagation.sh [--smoke] GEOKV_PRIMARY GEOKV_LEAF GEOKV_GATEWAY GEOKV_PROXY PROPAGATE GEOKV_CLI
#
# Three primaries (feed listeners), leaf L1 following the leader's feed directly, leaf L2
# following it through geokv-proxy with a 40 ms one-way delay (source -> leaf), a gateway on
# each leaf. Runs 200/s and 5,000/s for 20 s on each path (--smoke: 2 s at 200/s, direct only)
# and prints `metric <name> <value> <unit>` lines. Then the same for NATS (not in --smoke): a
# 3-node nats-server JetStream hub with a KV bucket, a leaf node mirroring it into its own
# JetStream domain, measured by nats_propagation.js (kv.put acknowledged -> lkv.get on the
# leaf returns the value, polled back to back, so without the gateway's HTTP hop and 1 ms
# ?min_rev poll that geokv's figure includes). nats-server (Debian) and the npm package
# "nats" are installed when missing.
. "$(dirname "$0")/../lib/harness.sh"
SMOKE=0
[ "${1:-}" = --smoke ] && { SMOKE=1; shift; }
PRIM=$1 LEAF=$2 GW=$3 PROXY=$4 PROP=$5 CLI=$6
export GEOKV_TEST_PORTS=${GEOKV_TEST_PORTS:-24000-29999}
SECS=${PROPAGATION_SECONDS:-20}
[ "$SMOKE" = 1 ] && SECS=2

tap_start
declare -a CP PP FP NPID
for i in 1 2 3; do CP[i]=$(free_port); PP[i]=$(free_port); FP[i]=$(free_port); done
PEERS="1=127.0.0.1:${PP[1]},2=127.0.0.1:${PP[2]},3=127.0.0.1:${PP[3]}"
ALL="127.0.0.1:${CP[1]},127.0.0.1:${CP[2]},127.0.0.1:${CP[3]}"
waitlog() { local n; for ((n = 0; n < 300; n++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
for i in 1 2 3; do
	spawn "n$i" "$PRIM" --data "$TMP/d$i" --listen "127.0.0.1:${CP[i]}" --node-id "$i" \
		--cluster-id bench --peers "$PEERS" --feed-listen "127.0.0.1:${FP[i]}" --log-level warn
	NPID[i]=$SPAWNED
done
leader() {
	"$CLI" -s "$ALL" status 2>/dev/null | awk '/^  [0-9]+ .* leader / { print $1; exit }'
}
has_leader() { [ -n "$(leader)" ]; }
wait_until 15 has_leader && ok "the group has a leader" || { fail "a leader"; tap_end; exit 1; }
L=$(leader)
GEOKV_CLUSTER=bench "$CLI" -s "$ALL" bucket add c >/dev/null
PXC=$(free_port); PX=$(free_port)
spawn proxy "$PROXY" --control "127.0.0.1:$PXC" --link "f=127.0.0.1:$PX>127.0.0.1:${FP[L]}"
wait_until 5 grep -q "proxy ready" "$TMP/proxy.log"
"$PROXY" ctl "127.0.0.1:$PXC" delay f down 40 >/dev/null

declare -A GPORT
start_pair() { # NAME SOURCE
	local lp gp n
	spawn "$1" "$LEAF" --data "$TMP/$1" --primaries "$2" --cluster-id bench --log-level warn
	gp=$(free_port)
	spawn "g$1" "$GW" --plain --data "$TMP/$1/state" --listen "127.0.0.1:$gp" --bucket c \
		--workers 1 --log-level warn
	GPORT[$1]=$gp
	for ((n = 0; n < 200; n++)); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gp/healthz")" = 200 ] && return 0
		GEOKV_CLUSTER=bench "$CLI" -s "$ALL" put c warmup x >/dev/null 2>&1
		sleep 0.05
	done
	return 1
}
start_pair l1 "127.0.0.1:${FP[L]}" && ok "leaf l1 (direct) and its gateway are healthy" || fail "leaf l1 healthy"
[ "$SMOKE" = 1 ] || { start_pair l2 "127.0.0.1:$PX" && ok "leaf l2 (40 ms away) and its gateway are healthy" || fail "leaf l2 healthy"; }

measure() { # NAME LEAF RATE
	local out
	out=$("$PROP" --servers "127.0.0.1:${CP[L]}" --gateway "127.0.0.1:${GPORT[$2]}" --bucket c \
		--rate "$3" --seconds "$SECS" --cluster bench 2>&1)
	local rc=$?
	printf '%s\n' "$out" | sed -n 's/^metric propagation_/metric propagation_'"$1"'_/p'
	[ $rc = 0 ] && ok "$1: $(printf '%s\n' "$out" | awk '/p50|p99|max/ { printf "%s=%s ", $2, $3 }')" ||
		fail "$1" "$(printf '%s\n' "$out" | tail -n 3)"
}
measure loopback_200 l1 200
if [ "$SMOKE" = 0 ]; then
	measure loopback_5000 l1 5000
	measure delay40_200 l2 200
	measure delay40_5000 l2 5000
fi

# ---- NATS: JetStream hub of 3 + leaf node mirroring the KV bucket ---------------------------
nats_bench() {
	local sudo="" i NJ=${GEOKV_BENCH_CACHE:-/tmp/geokv-bench-cache}/natsjs
	[ "$(id -u)" = 0 ] || sudo=sudo
	if ! command -v nats-server >/dev/null; then
		echo "# installing nats-server" >&2
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nats-server </dev/null >/dev/null || return 1
	fi
	if [ ! -d "$NJ/node_modules/nats" ]; then
		command -v npm >/dev/null || return 1
		mkdir -p "$NJ" && npm install --silent --prefix "$NJ" nats@2 >/dev/null 2>&1 || return 1
	fi
	declare -a NC NR NL
	for i in 1 2 3; do NC[i]=$(free_port); NR[i]=$(free_port); NL[i]=$(free_port); done
	local LC=$(free_port)
	for i in 1 2 3; do
		cat >"$TMP/hub$i.conf" <<EOC
server_name: hub$i
listen: 127.0.0.1:${NC[i]}
jetstream { store_dir: "$TMP/nats$i", domain: hub }
cluster { name: hub, listen: 127.0.0.1:${NR[i]}, routes: [nats-route://127.0.0.1:${NR[1]}, nats-route://127.0.0.1:${NR[2]}, nats-route://127.0.0.1:${NR[3]}] }
leafnodes { listen: 127.0.0.1:${NL[i]} }
EOC
		spawn "nats$i" nats-server -c "$TMP/hub$i.conf"
	done
	cat >"$TMP/natsleaf.conf" <<EOC
server_name: leaf1
listen: 127.0.0.1:$LC
jetstream { store_dir: "$TMP/natsleaf", domain: leaf }
leafnodes { remotes: [ { urls: ["nats-leaf://127.0.0.1:${NL[1]}", "nats-leaf://127.0.0.1:${NL[2]}", "nats-leaf://127.0.0.1:${NL[3]}"] } ] }
EOC
	spawn natsleaf nats-server -c "$TMP/natsleaf.conf"
	sleep 3 # cluster formed, JetStream meta leader elected, leaf connected
	local hubs="nats://127.0.0.1:${NC[1]},nats://127.0.0.1:${NC[2]},nats://127.0.0.1:${NC[3]}" r out rc
	for r in 200 5000; do
		out=$(NODE_PATH="$NJ/node_modules" node "$(dirname "$0")/nats_propagation.js" "$hubs" \
			"nats://127.0.0.1:$LC" "$r" "$SECS" 2>&1); rc=$?
		printf '%s\n' "$out" | sed -n 's/^metric propagation_/metric propagation_nats_'"$r"'_/p'
		[ $rc = 0 ] && ok "nats_$r: $(printf '%s\n' "$out" | awk '/p50|p99|max/ { printf "%s=%s ", $2, $3 }')" ||
			fail "nats_$r" "$(printf '%s\n' "$out" | tail -n 2)"
	done
}
if [ "$SMOKE" = 0 ] && [ "${PROPAGATION_NATS:-1}" = 1 ]; then
	nats_bench || skip "NATS comparison" "nats-server or the npm package nats could not be installed"
fi
tap_end
