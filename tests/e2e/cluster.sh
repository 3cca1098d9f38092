#!/usr/bin/env bash
# End to end, as the quick start runs it: geokv-primary, geokv-gateway reading the primary's
# store over HTTPS with dev certificates, and the geokv CLI publishing. Proves the parts
# agree: what the CLI acknowledges is what users read, read-your-writes through min_rev, and
# what a GTM sees when the node dies (healthz 503, reads still served) and comes back.
#
#   cluster.sh GEOKV_PRIMARY GEOKV_GATEWAY GEOKV_CLI REPO_ROOT
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1 GW=$2 CLI=$3 ROOT=$4
tap_start

"$ROOT/deploy/certs.sh" "$TMP/certs" >/dev/null 2>&1
PP=$(free_port); GP=$(free_port); MP=$(free_port)
while [ "$GP" = "$PP" ]; do GP=$(free_port); done
while [ "$MP" = "$PP" ] || [ "$MP" = "$GP" ]; do MP=$(free_port); done
S=127.0.0.1:$PP
URL=https://127.0.0.1:$GP
cli() { "$CLI" -s "$S" "$@"; }
get() { curl -s --cacert "$TMP/certs/ca.crt" "$@"; }
code() { curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/certs/ca.crt" "$@"; }
# header NAME URL: the value of a response header (names are case-insensitive in HTTP/1.1)
header() { get -D - -o /dev/null "$2" | tr -d '\r' | awk -v h="$(echo "$1" | tr A-Z a-z)" -F': ' 'tolower($1) == h { print $2 }'; }
health_is() { [ "$(code "$URL/healthz")" = "$1" ]; }

start_primary() {
	spawn primary "$PRIM" --data "$TMP/p1" --listen "$S" --cluster-id e2e
	PRIM_PID=$SPAWNED
	wait_until 10 cli status
}

check "primary starts and answers" start_primary
check "bucket add" cli bucket add cards --history 3 --content-type application/json

python3 - >"$TMP/keys.ndjson" <<'PY'
import json
for i in range(2000):
    print(json.dumps({"key": f"card.{i:05d}", "value": json.dumps({"n": i, "token": f"{i*7919:08x}"})}))
PY
expect "load acknowledges every key" "loaded 2000 keys" cli load cards "$TMP/keys.ndjson"

spawn gateway "$GW" --data "$TMP/p1/state" --listen "127.0.0.1:$GP" --cert "$TMP/certs/server.crt" \
	--key "$TMP/certs/server.key" --bucket cards --workers 2 \
	--metrics-listen "127.0.0.1:$MP" --set health.max_contact_age_ms=600
GW_PID=$SPAWNED
check "gateway starts and is live" wait_until 10 get -f "$URL/livez"
check "gateway is ready and healthy beside a live primary" wait_until 10 get -f "$URL/healthz"

# Every acknowledged key is served, byte for byte, with the revision the CLI reports.
want=$(cli get cards card.01234 --raw)
expect "HTTPS GET returns the value the CLI wrote" "$want" get "$URL/kv/card.01234"
rev=$(cli get cards card.01234 | sed -n 's/.*revision: \([0-9]*\).*/\1/p')
check "ETag is the key's revision" test "$(header ETag "$URL/kv/card.01234")" = "\"$rev\""
expect "If-None-Match with that ETag is 304" 304 code -H "If-None-Match: \"$rev\"" "$URL/kv/card.01234"
check "content type comes from the bucket" test "$(header Content-Type "$URL/kv/card.00001")" = application/json
ok_sample=1
for k in 00000 00777 01999; do
	[ "$(get "$URL/kv/card.$k")" = "$(cli get cards card.$k --raw)" ] || ok_sample=0
done
check "sampled keys agree between CLI and gateway" test "$ok_sample" = 1

# Read-your-writes: the publisher's revision, passed as min_rev, is honoured.
nrev=$(cli put cards card.00042 '{"n":42,"v":2}')
check "put returns a revision above the load's" test "$nrev" -gt "$rev"
expect "min_rev read sees the publisher's write" '"v":2' get "$URL/kv/card.00042?min_rev=$nrev&wait_ms=2000"
expect "min_rev beyond the node's revision times out with 504" 504 code "$URL/kv/card.00042?min_rev=$((nrev + 1000))&wait_ms=50"
cli del cards card.00043 >/dev/null
expect "a deleted key is 404 at the gateway" 404 code "$URL/kv/card.00043"
expect "an invalid key is 400" 400 code "$URL/kv/.bad"

# The node dies: the GTM must see it, users must still be served.
stop "$PRIM_PID" 9
check "healthz turns 503 once the primary stops updating its status" wait_until 10 health_is 503
expect "the 503 body says why" '"status":"' get "$URL/healthz"
expect "reads are still served from the store while the node is down" '"v":2' get "$URL/kv/card.00042"

# It comes back with everything it acknowledged.
check "primary restarts after kill -9" start_primary
check "healthz returns to 200" wait_until 10 health_is 200
expect "acknowledged keys survive kill -9 (count)" 1999 sh -c "\"$CLI\" -s $S keys cards | wc -l"
expect "acknowledged put survives kill -9" '"v":2' cli get cards card.00042 --raw

m=$(curl -s "http://127.0.0.1:$MP/metrics")
case "$m" in *geokv_gateway_requests_total*) ok "gateway metrics count requests" ;; *) fail "gateway metrics count requests" "${m:0:300}" ;; esac
expect "/metrics is not served on the public port by default" 404 code "$URL/metrics"

stop "$GW_PID"; check "gateway exits 0 on SIGTERM" test "$RC" = 0
stop "$PRIM_PID"; check "primary exits 0 on SIGTERM" test "$RC" = 0
tap_end
