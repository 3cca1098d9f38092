#!/usr/bin/env bash
# geokv-gateway follows a replaced state/ directory: a node installing a snapshot renames a
# new state/ into place (core/primary.c finish_swap: state -> state.old, state.new -> state,
# state.old removed). The running gateway must serve the new store's data (same process)
# and close the old store once no worker reads it. Emits TAP.
#
#   swap.sh GATEWAY FIXTURE
set -uo pipefail

GW=${1:?gateway binary}
FX=${2:?gw-fixture binary}
tmp=$(mktemp -d /tmp/gw-swap.XXXXXX)
GWPID=
n=0
fails=0

cleanup() {
	[ -n "$GWPID" ] && kill "$GWPID" 2>/dev/null && wait "$GWPID" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

ok() { n=$((n+1)); echo "ok $n - $1"; }
nok() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $1"; [ $# -gt 1 ] && echo "# $2"; }

free_port() {
	python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 60000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        s.close()
PY
}

get() { curl -s --max-time 5 "http://127.0.0.1:$P/kv/$1"; }

# A store like a node's: some keys, then K; the replacement has more history (higher index).
mkstore() { # dir value extra
	mkdir -p "$1"
	"$FX" load "$1" default "$3" 10 >/dev/null && "$FX" put "$1" default K "$2" >/dev/null
}

swap_in() { # built dir -> state, the way finish_swap does it
	mv "$tmp/state" "$tmp/state.old" && mv "$1" "$tmp/state" && rm -rf "$tmp/state.old"
}

wait_value() { # key value seconds
	local i
	for i in $(seq 1 $(($3 * 20))); do
		[ "$(get "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	echo "still $(get "$1")"
	return 1
}

# fds of the gateway still open on a removed data.mdb (the old store)
old_fds() { ls -l "/proc/$GWPID/fd" 2>/dev/null | grep -cE '(data|lock)\.mdb \(deleted\)'; }

mkstore "$tmp/state" v1 5 || { echo "Bail out! fixture failed"; exit 1; }
P=$(free_port)
"$GW" --data "$tmp/state" --listen "127.0.0.1:$P" --plain --workers 2 \
	--set health.require_node=false >"$tmp/gw.log" 2>&1 &
GWPID=$!
for _ in $(seq 1 100); do get K >/dev/null && break; sleep 0.05; done

if [ "$(get K)" = v1 ]; then ok "GET K = v1 from the first store"; else nok "GET K = v1" "$(get K)"; fi

# A keep-alive client that stays connected across the swap (request-boundary switch).
python3 - "$P" >"$tmp/ka.out" 2>&1 <<'PY' &
import http.client, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
def g():
    c.request("GET", "/kv/K"); r = c.getresponse(); return r.read().decode()
print("before", g(), flush=True)
deadline = time.time() + 4
v = g()
while v != "v2" and time.time() < deadline:
    time.sleep(0.05); v = g()
print("after", v, flush=True)
PY
KAPID=$!
for _ in $(seq 1 100); do grep -q '^before' "$tmp/ka.out" && break; sleep 0.05; done

mkstore "$tmp/build" v2 8 || { echo "Bail out! fixture failed"; exit 1; }
swap_in "$tmp/build"
if out=$(wait_value K v2 3); then ok "after state/ is replaced, GET K = v2 within 3 s"
else nok "after state/ is replaced, GET K = v2 within 3 s" "$out"; fi
if kill -0 "$GWPID" 2>/dev/null; then ok "same gateway process keeps serving"; else nok "gateway alive"; fi
wait "$KAPID"
if grep -q '^before v1' "$tmp/ka.out" && grep -q '^after v2' "$tmp/ka.out"; then
	ok "a keep-alive connection sees v2 on the same connection"
else nok "keep-alive connection switches" "$(tr '\n' '|' <"$tmp/ka.out")"; fi

t_closed() {
	local i
	for i in $(seq 1 60); do [ "$(old_fds)" = 0 ] && return 0; sleep 0.05; done
	ls -l "/proc/$GWPID/fd" | grep data.mdb
	return 1
}
if out=$(t_closed); then ok "old store closed: no fd left on the removed data.mdb"
else nok "old store closed" "$(echo "$out" | tr '\n' '|')"; fi
if grep -q 'store replaced, reopened.*applied=' "$tmp/gw.log"; then ok "INFO store replaced, reopened (with applied index)"
else nok "log line" "$(tail -n 5 "$tmp/gw.log" | tr '\n' '|')"; fi

# Twice more in quick succession: a worker may skip a generation.
mkstore "$tmp/b3" v3 2 && swap_in "$tmp/b3"
mkstore "$tmp/b4" v4 3 && swap_in "$tmp/b4"
if out=$(wait_value K v4 3); then ok "two more replacements: GET K = v4"; else nok "GET K = v4" "$out"; fi
if out=$(t_closed); then ok "all old stores closed"; else nok "all old stores closed" "$out"; fi
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$P/healthz")
if [ "$code" = 200 ]; then ok "/healthz 200 on the new store"; else nok "/healthz" "got $code"; fi

kill -TERM "$GWPID"; wait "$GWPID"; rc=$?; GWPID=
if [ $rc = 0 ]; then ok "SIGTERM: clean exit"; else nok "SIGTERM: clean exit" "exit $rc"; fi

echo "1..$n"
[ $fails = 0 ]
