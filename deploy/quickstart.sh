#!/usr/bin/env bash
# geokv quick start: install what is missing, build, start a local cluster on loopback under
# ./run/, load sample keys, and print the command that reads one over HTTPS.
#
#   deploy/quickstart.sh          start the local cluster afresh (a restart discards the
#                                 sample cluster's data; certificates are kept)
#   deploy/quickstart.sh stop     stop every process it started (by pid)
#   deploy/quickstart.sh status   show what runs and where
#
# Env: GEOKV_KEYS (sample keys to load, default 10000), GEOKV_PRIMARY_PORT (default 7400),
#      GEOKV_GATEWAY_PORT (default 8443). A busy port is skipped for the next free one.
#
# What runs: three geokv-primary processes forming one Raft group (client ports
# GEOKV_PRIMARY_PORT and the next two free ones, TLS with dev certificates; peer traffic on
# loopback ports from 7410, plain; leaf feed on ports from 7420, TLS), leaf 1 following the
# primaries' feed (TLS, client certificate) and serving its own feed (from 7430), leaf 2
# following leaf 1, and geokv-gateway reading leaf 2's state/ store read-only over HTTPS:
# the whole shape of the product, publisher -> primaries -> leaf -> leaf -> gateway.
# Leaf metrics and probes: plain HTTP on ports from 7440.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
run=$root/run
build=$root/build
cmd=${1:-start}

log() { printf 'quickstart: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }

stop_all() {
	local f pid n
	shopt -s nullglob
	for f in "$run"/*.pid; do
		pid=$(cat "$f")
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			for n in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -0 "$pid" 2>/dev/null && { log "pid $pid did not stop on SIGTERM, killing"; kill -KILL "$pid" 2>/dev/null || true; }
			log "stopped $(basename "$f" .pid) (pid $pid)"
		fi
		rm -f "$f"
	done
}

case "$cmd" in
stop) stop_all; exit 0 ;;
status)
	shopt -s nullglob
	for f in "$run"/*.pid; do
		pid=$(cat "$f"); state=dead; kill -0 "$pid" 2>/dev/null && state=running
		printf '%-10s pid %-8s %s\n' "$(basename "$f" .pid)" "$pid" "$state"
	done
	[ -f "$run/env" ] && cat "$run/env"
	exit 0 ;;
start) ;;
-h|--help|help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) die "unknown command '$cmd' (start, stop, status)" ;;
esac

deploy/deps.sh build
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" >/dev/null || die "meson setup failed"
fi
ninja -C "$build" >/dev/null || { ninja -C "$build" | tail -30; die "build failed"; }

geokv=$build/proto/geokv
primary=$build/core/geokv-primary
gateway=$build/gateway/geokv-gateway
leaf=$build/leaf/geokv-leaf
for b in "$geokv" "$primary" "$gateway" "$leaf"; do [ -x "$b" ] || die "missing binary $b"; done

stop_all
# A quick start is a demo: begin from empty stores every time, so a run folder left by an
# older checkout (or a half-finished run) can never get in the way.
rm -rf "$run"/primary* "$run"/leaf* "$run"/*.log "$run/sample.ndjson"
mkdir -p "$run"
deploy/certs.sh "$run/certs" >/dev/null

taken=" "
# pick START: the first free port from START not already handed out, in $PICKED (no
# subshell, so $taken accumulates)
pick() { PICKED=$1; while ! port_free "$PICKED" || [[ "$taken" == *" $PICKED "* ]]; do PICKED=$((PICKED + 1)); done; taken+="$PICKED "; }
declare -a cport pport fport lport mport
for i in 1 2 3; do pick "${GEOKV_PRIMARY_PORT:-7400}"; cport[i]=$PICKED; done
for i in 1 2 3; do pick 7410; pport[i]=$PICKED; done
for i in 1 2 3; do pick 7420; fport[i]=$PICKED; done
for i in 1 2; do pick 7430; lport[i]=$PICKED; done
for i in 1 2; do pick 7440; mport[i]=$PICKED; done
pick "${GEOKV_GATEWAY_PORT:-8443}"; gport=$PICKED
peers="1=127.0.0.1:${pport[1]},2=127.0.0.1:${pport[2]},3=127.0.0.1:${pport[3]}"
server="127.0.0.1:${cport[1]},127.0.0.1:${cport[2]},127.0.0.1:${cport[3]}"

for i in 1 2 3; do
	mkdir -p "$run/primary$i"
	"$primary" --data "$run/primary$i" --listen "127.0.0.1:${cport[i]}" --node-id "$i" \
		--cluster-id quickstart --peers "$peers" --feed-listen "127.0.0.1:${fport[i]}" \
		--cert "$run/certs/server.crt" --key "$run/certs/server.key" \
		>>"$run/primary$i.log" 2>&1 &
	echo $! >"$run/primary$i.pid"
done

# ready: every member answers and the group has a leader
for i in $(seq 150); do
	st=$("$geokv" -s "127.0.0.1:${cport[1]}" --tls-ca "$run/certs/ca.crt" status 2>/dev/null) &&
		printf '%s\n' "$st" | grep -q '^leader: *[0-9]' && break
	for n in 1 2 3; do
		kill -0 "$(cat "$run/primary$n.pid")" 2>/dev/null || die "primary $n exited; see $run/primary$n.log"
	done
	sleep 0.1
done
"$geokv" -s "$server" --tls-ca "$run/certs/ca.crt" status >/dev/null ||
	die "the group is not answering on $server; see $run/primary*.log"
log "primaries 1-3 on 127.0.0.1:${cport[1]}, ${cport[2]}, ${cport[3]} (logs: run/primary{1,2,3}.log)"

"$geokv" -s "$server" --tls-ca "$run/certs/ca.crt" bucket add cards --history 5 --content-type application/json >/dev/null 2>&1 ||
	"$geokv" -s "$server" --tls-ca "$run/certs/ca.crt" bucket info cards >/dev/null || die "cannot create bucket cards"

nkeys=${GEOKV_KEYS:-10000}
python3 - "$nkeys" >"$run/sample.ndjson" <<'PY'
import json, sys, random
rnd = random.Random(42)
for i in range(int(sys.argv[1])):
    rec = {"card": f"4{rnd.randrange(10**5):05d}******{rnd.randrange(10**4):04d}",
           "holder": f"customer-{i:07d}", "exp": f"{rnd.randrange(1,13):02d}/{rnd.randrange(27,33)}",
           "token": f"{rnd.getrandbits(128):032x}"}
    print(json.dumps({"key": f"card.{i:07d}", "value": json.dumps(rec, separators=(',', ':'))}))
PY
"$geokv" -s "$server" --tls-ca "$run/certs/ca.crt" load cards "$run/sample.ndjson" >&2 || die "load failed"

# Leaves: 1 follows the primaries, 2 follows 1 (a fan-out tree), both over TLS with the dev
# certificate as client certificate; each also serves the feed to leaves below it.
feeds="127.0.0.1:${fport[1]},127.0.0.1:${fport[2]},127.0.0.1:${fport[3]}"
start_leaf() { # N SOURCES
	"$leaf" --data "$run/leaf$1" --primaries "$2" --node-id "$1" --name "leaf$1" \
		--cluster-id quickstart --listen "127.0.0.1:${lport[$1]}" \
		--metrics-listen "127.0.0.1:${mport[$1]}" --ca "$run/certs/ca.crt" \
		--cert "$run/certs/server.crt" --key "$run/certs/server.key" \
		>>"$run/leaf$1.log" 2>&1 &
	echo $! >"$run/leaf$1.pid"
}
start_leaf 1 "$feeds"
start_leaf 2 "127.0.0.1:${lport[1]}"
# ready: leaf 2 (two hops away) has applied what the group committed
target=$("$geokv" -s "$server" --tls-ca "$run/certs/ca.crt" status | awk '/^applied index:/ { print $3 }')
for i in $(seq 150); do
	got=$(curl -s "http://127.0.0.1:${mport[2]}/healthz" | sed -n 's/.*"applied":\([0-9]*\).*/\1/p')
	[ -n "$got" ] && [ "$got" -ge "$target" ] && break
	for n in 1 2; do
		kill -0 "$(cat "$run/leaf$n.pid")" 2>/dev/null || die "leaf $n exited; see $run/leaf$n.log"
	done
	sleep 0.1
done
[ -n "$got" ] && [ "$got" -ge "$target" ] || die "leaf 2 did not catch up; see $run/leaf*.log"
log "leaf 1 follows the primaries, leaf 2 follows leaf 1 (feeds on 127.0.0.1:${lport[1]}, ${lport[2]}; probes on http://127.0.0.1:${mport[1]}, ${mport[2]}; logs: run/leaf{1,2}.log)"

"$gateway" --data "$run/leaf2/state" --listen "127.0.0.1:$gport" \
	--cert "$run/certs/server.crt" --key "$run/certs/server.key" --bucket cards \
	>>"$run/gateway.log" 2>&1 &
echo $! >"$run/gateway.pid"
for i in $(seq 100); do
	curl -sf --cacert "$run/certs/ca.crt" "https://127.0.0.1:$gport/livez" >/dev/null 2>&1 && break
	kill -0 "$(cat "$run/gateway.pid")" 2>/dev/null || die "gateway exited; see $run/gateway.log"
	sleep 0.1
done
log "gateway listening on https://127.0.0.1:$gport (log: run/gateway.log)"

cat >"$run/env" <<EOF
GEOKV_SERVER=$server
GEOKV_TLS_CA=$run/certs/ca.crt
GEOKV_GATEWAY=https://127.0.0.1:$gport
EOF

cat <<EOF

geokv is running: a three-member primary group on $server, leaf 1 following
it, leaf 2 following leaf 1, and an HTTPS gateway on 127.0.0.1:$gport serving leaf 2's copy;
$nkeys keys in bucket 'cards'.

Read a key over HTTPS:
  curl --cacert run/certs/ca.crt https://127.0.0.1:$gport/kv/card.0000042

More:
  $build/proto/geokv -s $server --tls-ca run/certs/ca.crt get cards card.0000042
  $build/proto/geokv -s $server --tls-ca run/certs/ca.crt status --checksum
  curl --cacert run/certs/ca.crt https://127.0.0.1:$gport/healthz
  curl http://127.0.0.1:${mport[2]}/healthz      # leaf 2: lag, source
  curl http://127.0.0.1:${mport[1]}/metrics      # leaf 1: geokv_leaf_*, and its feed to leaf 2
  deploy/quickstart.sh stop
EOF
