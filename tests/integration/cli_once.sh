#!/usr/bin/env bash
# Exactly-once loads (issue 11, part 4): `geokv load` into a three-member group over TLS, the
# leader killed with -9 in the middle; the load retries through the other members and
# finishes, and every key is present exactly once: the store's revision grew by exactly the
# number of keys (a batch applied twice would take more revisions) and each key has one
# revision in its history. Then the killed member rejoins with an equal checksum. Emits TAP.
#
#   cli_once.sh GEOKV_PRIMARY GEOKV_CLI CERTS_SH
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
CLI=$(realpath "$2")
CERTS=$3
N=${ONCE_KEYS:-300000}
RUN_TIMEOUT=120

tap_start
"$CERTS" "$TMP/certs" >/dev/null || { echo "Bail out! certs.sh failed"; exit 1; }
C=$TMP/certs
export GEOKV_CONFIG=$TMP/contexts.ini GEOKV_TLS_CA=$C/ca.crt GEOKV_CLUSTER=once
unset GEOKV_TOKEN GEOKV_TOKEN_FILE GEOKV_CONTEXT GEOKV_SERVER

declare -a CP PP NPID
for i in 1 2 3; do CP[i]=$(free_port); PP[i]=$(free_port); done
PEERS="1=127.0.0.1:${PP[1]},2=127.0.0.1:${PP[2]},3=127.0.0.1:${PP[3]}"
ALL="127.0.0.1:${CP[1]},127.0.0.1:${CP[2]},127.0.0.1:${CP[3]}"
addr() { echo "127.0.0.1:${CP[$1]}"; }
start_node() {
	local i=$1 from=1 n
	local log=$TMP/n$i.log
	[ -e "$log" ] && from=$(($(stat -c %s "$log") + 1))
	spawn "n$i" "$PRIM" --data "$TMP/d$i" --listen "$(addr "$i")" --node-id "$i" \
		--cluster-id once --peers "$PEERS" --sync-interval-ms 200 \
		--cert "$C/server.crt" --key "$C/server.key"
	NPID[i]=$SPAWNED
	for ((n = 0; n < 300; n++)); do
		tail -c "+$from" "$log" 2>/dev/null | grep -q "INFO primary serving" && return 0
		kill -0 "${NPID[i]}" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
cli() { "$CLI" --timeout 10s "$@"; }
leader() {
	local i out
	for i in 1 2 3; do
		out=$(cli -s "$(addr "$i")" status 2>/dev/null) || true
		out=$(printf '%s\n' "$out" | awk '/^  [0-9]+ .* leader / { print $1; exit }')
		[ -n "$out" ] && { echo "$out"; return 0; }
	done
	return 1
}
has_leader() { leader >/dev/null; }
revision() { cli -s "$ALL" status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])'; }
converged() {
	local out
	out=$(cli -s "$(addr 1)" status --checksum 2>&1) || return 1
	printf '%s\n' "$out" | grep -q "checksums: equal" || return 1
	[ "$(printf '%s\n' "$out" | awk '/^  [0-9]+ / { print $6 }' | sort -u | wc -l)" = 1 ]
}

for i in 1 2 3; do start_node "$i" || { echo "Bail out! member $i"; tail -n 5 "$TMP/n$i.log"; exit 1; }; done
wait_until 10 has_leader || { echo "Bail out! no leader"; exit 1; }
cli -s "$ALL" bucket add bulk --history 5 >/dev/null || { echo "Bail out! bucket add"; exit 1; }
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write("user.%010d.card%06d\t%s\n" % (i, i % 999983, ("%08d" % i) * 12 + "abcd"))
' "$TMP/keys.tsv" "$N"
R0=$(revision)

L=$(leader)
# the leader first in the list: the load talks to it, and loses it mid-batch
spawn load "$CLI" --timeout 10s -s "$(addr "$L"),$ALL" load bulk "$TMP/keys.tsv" --window 8 --progress-every 100ms
LP=$SPAWNED
for _ in $(seq 1 600); do
	n=$(sed -n 's/^progress: \([0-9]*\) keys.*/\1/p' "$TMP/load.log" | tail -n 1)
	[ "${n:-0}" -ge $((N / 5)) ] && break
	sleep 0.02
done
# the leader now (an election may have moved it since the load started)
L=$(leader || echo "$L")
kill -9 "${NPID[L]}"; wait "${NPID[L]}" 2>/dev/null
echo "# killed leader $L after ${n:-0} keys acknowledged"
wait "$LP"; LRC=$?
echo "# $(grep -v '^progress' "$TMP/load.log" | tail -n 2 | tr '\n' ' ')"
# Batches cut off by the kill are resent by the client library (lost connection) or by the
# loader (a member's timeout or "no leader" while the group elects: counted as "resent").
if [ "$LRC" -eq 0 ] && grep -q "loaded $N keys" "$TMP/load.log"; then
	ok "the load finishes through the other members after kill -9 of leader $L"
else fail "the load finishes after kill -9" "rc=$LRC" "$(tail -n 3 "$TMP/load.log")"; fi
R1=$(revision)
if [ "$((R1 - R0))" -eq "$N" ]; then
	ok "every key written exactly once: the revision grew by exactly $N"
else fail "every key written exactly once" "revision grew by $((R1 - R0)), want $N"; fi
check "the bucket holds all $N keys" test "$(cli -s "$ALL" keys bulk | wc -l)" -eq "$N"
# one revision per key: a sample of history (every 1000th key, and all around the kill)
bad=0
for k in $(awk -v n="$N" 'NR % 997 == 1 { print $1 }' "$TMP/keys.tsv" | head -n 400); do
	h=$(cli -s "$ALL" history bulk "$k" -o json | wc -l)
	[ "$h" -eq 1 ] || { bad=$((bad + 1)); echo "# $k has $h revisions"; }
done
check "sampled keys have one revision each in their history" test "$bad" -eq 0
start_node "$L" || fail "killed leader rejoins" "$(tail -n 5 "$TMP/n$L.log")"
if wait_until 60 converged; then ok "all three converge with equal checksums"; else fail "converge" "$(cli -s "$(addr 1)" status --checksum 2>&1)"; fi

for i in 1 2 3; do stop "${NPID[i]}"; done
tap_end
