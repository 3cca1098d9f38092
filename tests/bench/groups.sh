# Sourced by replicated-put.sh and failover.sh: a 3-member geokv group and a 3-member etcd
# cluster on loopback (free high ports, data under $tmp on the normal disk, durable commits:
# geokv fsyncs its Raft log before acknowledging, etcd fsyncs its WAL), started and stopped by
# pid. Needs: $tmp, $PRIM, $CLI set by the caller; `pids` and cleanup come from here.

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
	python3 -c '
import random, socket
for _ in range(200):
    p = random.randint(20000, 60000); s = socket.socket()
    try: s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError: s.close()'
}
wait_port() {
	for _ in $(seq 1 400); do
		python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench: port $1 never opened" >&2; return 1
}

# etcd-server + etcd-client 3.4 from Debian when missing; ETCD_OK=1 when usable.
ETCD_OK=0
ensure_etcd() {
	if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
		echo "bench: installing etcd-server etcd-client" >&2
		local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
			etcd-server etcd-client </dev/null >/dev/null 2>&1 || true
	fi
	command -v etcd >/dev/null && command -v etcdctl >/dev/null && ETCD_OK=1
	return 0
}

# ---- geokv --------------------------------------------------------------------------------
export GEOKV_CLUSTER=bench
declare -a GCP GPP GPID ECP EPP EPID
geokv_setup() {
	local i
	for i in 1 2 3; do GCP[i]=$(free_port); GPP[i]=$(free_port); done
	GPEERS="1=127.0.0.1:${GPP[1]},2=127.0.0.1:${GPP[2]},3=127.0.0.1:${GPP[3]}"
	GALL="127.0.0.1:${GCP[1]},127.0.0.1:${GCP[2]},127.0.0.1:${GCP[3]}"
}
gaddr() { echo "127.0.0.1:${GCP[$1]}"; }
geokv_start() { # I
	local i=$1
	"$PRIM" --data "$tmp/g$i" --listen "$(gaddr "$i")" --node-id "$i" --cluster-id bench \
		--peers "$GPEERS" --log-level warn >>"$tmp/g$i.log" 2>&1 &
	GPID[i]=$!; pids+=("${GPID[i]}")
}
geokv_stop() { # I
	kill "${GPID[$1]}" 2>/dev/null || true; wait "${GPID[$1]}" 2>/dev/null || true
}
# geokv_leader: the node id of the leader of the highest term any member reports (a leader
# just resumed from SIGSTOP still calls itself leader of its old term for a moment)
geokv_leader() {
	local i
	for i in 1 2 3; do
		"$CLI" --timeout 2s -s "$(gaddr "$i")" status 2>/dev/null || true
	done | awk '/^  [0-9]+ .* leader / { print $4, $1 }' | sort -n | tail -n 1 | awk '{ print $2 }' | grep .
}
geokv_wait_leader() {
	local l
	for _ in $(seq 1 300); do
		l=$(geokv_leader) && { echo "$l"; return 0; }
		sleep 0.1
	done
	echo "bench: the geokv group elected no leader" >&2; return 1
}
geokv_group() { # fresh group, bucket "bench"; GLEADER set
	local i
	rm -rf "$tmp"/g[123] "$tmp"/g[123].log
	geokv_setup
	for i in 1 2 3; do geokv_start "$i"; done
	for i in 1 2 3; do wait_port "${GCP[i]}"; done
	GLEADER=$(geokv_wait_leader)
	for _ in $(seq 1 50); do
		if "$CLI" --timeout 5s -s "$GALL" bucket add bench >/dev/null 2>&1 &&
			"$CLI" --timeout 5s -s "$GALL" put bench ready x >/dev/null 2>&1; then
			GLEADER=$(geokv_wait_leader) # the leader that committed them
			return 0
		fi
		sleep 0.2
	done
	echo "bench: geokv bucket add failed" >&2; return 1
}
geokv_group_stop() { local i; for i in 1 2 3; do geokv_stop "$i"; done; }

# ---- etcd ---------------------------------------------------------------------------------
etcd_setup() {
	local i
	for i in 1 2 3; do ECP[i]=$(free_port); EPP[i]=$(free_port); done
	EINIT="e1=http://127.0.0.1:${EPP[1]},e2=http://127.0.0.1:${EPP[2]},e3=http://127.0.0.1:${EPP[3]}"
	EALL="127.0.0.1:${ECP[1]},127.0.0.1:${ECP[2]},127.0.0.1:${ECP[3]}"
}
eaddr() { echo "127.0.0.1:${ECP[$1]}"; }
etcd_start() { # I [existing]
	local i=$1 state=${2:-new}
	ETCDCTL_API=3 etcd --name "e$i" --data-dir "$tmp/e$i" \
		--listen-client-urls "http://127.0.0.1:${ECP[i]}" \
		--advertise-client-urls "http://127.0.0.1:${ECP[i]}" \
		--listen-peer-urls "http://127.0.0.1:${EPP[i]}" \
		--initial-advertise-peer-urls "http://127.0.0.1:${EPP[i]}" \
		--initial-cluster "$EINIT" --initial-cluster-state "$state" \
		--initial-cluster-token bench --log-level warn >>"$tmp/e$i.log" 2>&1 &
	EPID[i]=$!; pids+=("${EPID[i]}")
}
etcd_stop() { kill "${EPID[$1]}" 2>/dev/null || true; wait "${EPID[$1]}" 2>/dev/null || true; }
# etcd_leader: the member index (1..3) that says it leads, or nothing
etcd_leader() {
	ETCDCTL_API=3 etcdctl --command-timeout=2s --endpoints="$EALL" endpoint status -w json 2>/dev/null |
		python3 -c '
import json, sys
ports = sys.argv[1:]
try: st = json.load(sys.stdin)
except Exception: sys.exit(1)
best = None
for e in st: # the self-declared leader of the highest term
    h = e["Status"]["header"]
    port = e["Endpoint"].rsplit(":", 1)[1]
    if h["member_id"] == e["Status"]["leader"] and port in ports:
        if best is None or e["Status"]["raftTerm"] > best[0]:
            best = (e["Status"]["raftTerm"], ports.index(port) + 1)
if best: print(best[1]); sys.exit(0)
sys.exit(1)' "${ECP[1]}" "${ECP[2]}" "${ECP[3]}"
}
etcd_wait_leader() {
	local l
	for _ in $(seq 1 300); do
		l=$(etcd_leader) && { echo "$l"; return 0; }
		sleep 0.1
	done
	echo "bench: etcd elected no leader" >&2; return 1
}
etcd_group() { # fresh cluster; ELEADER set
	local i
	rm -rf "$tmp"/e[123] "$tmp"/e[123].log
	etcd_setup
	for i in 1 2 3; do etcd_start "$i"; done
	for i in 1 2 3; do wait_port "${ECP[i]}"; done
	ELEADER=$(etcd_wait_leader)
}
etcd_group_stop() { local i; for i in 1 2 3; do etcd_stop "$i"; done; }
