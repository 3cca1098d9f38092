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
# What runs today: one geokv-primary (a Raft group of one), and geokv-gateway reading the
# primary's state/ store read-only over HTTPS with dev certificates. The three-node group and
# the leaf join this script as those parts land (see README.md, "Status").
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
for b in "$geokv" "$primary" "$gateway"; do [ -x "$b" ] || die "missing binary $b"; done

stop_all
# A quick start is a demo: begin from empty stores every time, so a run folder left by an
# older checkout (or a half-finished run) can never get in the way.
rm -rf "$run"/primary* "$run"/*.log "$run/sample.ndjson"
mkdir -p "$run"
deploy/certs.sh "$run/certs" >/dev/null

pport=$(free_port "${GEOKV_PRIMARY_PORT:-7400}")
gport=$(free_port "${GEOKV_GATEWAY_PORT:-8443}")
[ "$gport" = "$pport" ] && gport=$(free_port $((gport + 1)))
server=127.0.0.1:$pport

mkdir -p "$run/primary1"
"$primary" --data "$run/primary1" --listen "$server" --node-id 1 --cluster-id quickstart \
	--cert "$run/certs/server.crt" --key "$run/certs/server.key" \
	>>"$run/primary1.log" 2>&1 &
echo $! >"$run/primary1.pid"

for i in $(seq 100); do
	"$geokv" -s "$server" --tls-ca "$run/certs/ca.crt" status >/dev/null 2>&1 && break
	kill -0 "$(cat "$run/primary1.pid")" 2>/dev/null || die "primary exited; see $run/primary1.log"
	sleep 0.1
done
"$geokv" -s "$server" --tls-ca "$run/certs/ca.crt" status >/dev/null || die "primary not answering on $server; see $run/primary1.log"
log "primary 1 listening on $server (log: run/primary1.log)"

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

"$gateway" --data "$run/primary1/state" --listen "127.0.0.1:$gport" \
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
GEOKV_GATEWAY=https://127.0.0.1:$gport
EOF

cat <<EOF

geokv is running: primary on $server, HTTPS gateway on 127.0.0.1:$gport, $nkeys keys in bucket 'cards'.

Read a key over HTTPS:
  curl --cacert run/certs/ca.crt https://127.0.0.1:$gport/kv/card.0000042

More:
  $build/proto/geokv -s $server --tls-ca run/certs/ca.crt get cards card.0000042
  curl --cacert run/certs/ca.crt https://127.0.0.1:$gport/healthz
  deploy/quickstart.sh stop
EOF
