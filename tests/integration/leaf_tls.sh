#!/usr/bin/env bash
# The leaf feed's handshake: TLS with mutual certificates (deploy/certs.sh), the cluster id
# and the HELLO token, from a primary and from a leaf serving a leaf below it. Every refusal
# must leave the refused leaf unfed (never silently fed by the wrong source) and be logged.
#
#   leaf_tls.sh GEOKV_PRIMARY GEOKV_CLI GEOKV_LEAF CERTS_SH
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
CLI=$2
LEAF=$3
CERTS=$4
export GEOKV_TEST_PORTS=${GEOKV_TEST_PORTS:-24000-29999}
export GEOKV_CLUSTER=tls1

tap_start
"$CERTS" "$TMP/certs" >/dev/null || { echo "Bail out! certs.sh failed"; exit 1; }
C=$TMP/certs
printf 'feed-s3cret\n' >"$TMP/token"; chmod 600 "$TMP/token"
printf 'wrong\n' >"$TMP/badtoken.txt"; chmod 600 "$TMP/badtoken.txt"
FEED=$(free_port)
if spawn_primary p "$TMP/p" --cluster-id tls1 --cert "$C/server.crt" --key "$C/server.key" \
	--client-ca "$C/ca.crt" --token-file "$TMP/token" --feed-listen "127.0.0.1:$FEED"; then
	ok "a primary with mutual TLS, a token and a feed listener"
else
	fail "primary starts" "$(tail -n 3 "$LOG")"; tap_end; exit 1
fi
P=$ADDR
cli() { GEOKV_TOKEN=feed-s3cret "$CLI" -s "$P" --tls-ca "$C/ca.crt" --tls-cert "$C/server.crt" --tls-key "$C/server.key" "$@"; }
expect_rc "bucket add over TLS" 0 "" cli bucket add c
for i in 1 2 3; do cli put c "k$i" "v$i" >/dev/null; done

declare -A LPID
leaf() { # NAME ARGS...
	local name=$1; shift
	spawn "$name" "$LEAF" --data "$TMP/$name" --node-id 7 "$@"
	LPID[$name]=$SPAWNED
}
sum_p() { cli status --checksum | awk '/^  [0-9]+ / { print $6, $NF; exit }'; }
sum_l() { "$LEAF" checksum "$TMP/$1/state" 2>/dev/null | sed -E 's/applied=([0-9]+) .* hash=([0-9a-f]+)/\1 \2/'; }
converged() { [ "$(sum_p)" = "$(sum_l "$1")" ]; }
following() { grep -q "INFO leaf following" "$TMP/$1.log"; }

leaf good --primaries "127.0.0.1:$FEED" --cluster-id tls1 --token-file "$TMP/token" \
	--ca "$C/ca.crt" --cert "$C/server.crt" --key "$C/server.key" \
	--listen "127.0.0.1:$(free_port)" --set tls.client_ca="$C/ca.crt"
if wait_until 10 converged good; then ok "a leaf with the CA, a client certificate and the token converges"; else fail "TLS leaf converges" "$(tail -n 3 "$TMP/good.log")"; fi

leaf nocert --primaries "127.0.0.1:$FEED" --cluster-id tls1 --token-file "$TMP/token" --ca "$C/ca.crt"
leaf plain --primaries "127.0.0.1:$FEED" --cluster-id tls1 --token-file "$TMP/token"
leaf badtoken --primaries "127.0.0.1:$FEED" --cluster-id tls1 --token-file "$TMP/badtoken.txt" \
	--ca "$C/ca.crt" --cert "$C/server.crt" --key "$C/server.key"
leaf othercluster --primaries "127.0.0.1:$FEED" --cluster-id other --token-file "$TMP/token" \
	--ca "$C/ca.crt" --cert "$C/server.crt" --key "$C/server.key"
sleep 2
for n in nocert plain badtoken othercluster; do
	if following "$n" || [ -s "$TMP/$n/state/data.mdb" ] && [ "$(sum_l "$n" | cut -d' ' -f1)" != 0 ]; then
		fail "leaf $n is refused and stays unfed" "$(tail -n 3 "$TMP/$n.log")"
	else
		ok "leaf $n is refused and stays unfed"
	fi
done
check "no client certificate: the primary refuses the TLS handshake and says so" grep -q "WARN feed TLS handshake failed" "$LOG"
check "no client certificate: the leaf logs the lost feed during the handshake" grep -q "feed connection lost.*state=handshake" "$TMP/nocert.log"
check "a plain leaf on the TLS feed: refused" grep -qE "err=(PROTO_ETLS|PROTO_ECLOSED|PROTO_EBADMSG|PROTO_ETOOBIG)" "$TMP/plain.log"
check "a bad token: PROTO_EAUTH, logged by the leaf" grep -q "code=PROTO_EAUTH" "$TMP/badtoken.log"
check "another cluster id: PROTO_ECLUSTER, logged by the leaf" grep -q "code=PROTO_ECLUSTER" "$TMP/othercluster.log"
check "the primary logged the refusals" grep -q "WARN feed leaf with a bad token" "$LOG"
check "the refused leaves retry with back-off, not in a tight loop" \
	sh -c "[ \$(grep -c 'feed connection lost' '$TMP/badtoken.log') -lt 60 ]"

# a leaf below the TLS leaf, over TLS with its own client certificate
LISTEN=$(grep -m1 "INFO leaf serving" "$TMP/good.log" | sed -E 's/.* listen=([^ ]+).*/\1/')
leaf below --primaries "$LISTEN" --cluster-id tls1 --token-file "$TMP/token" \
	--ca "$C/ca.crt" --cert "$C/server.crt" --key "$C/server.key"
cli put c after-below yes >/dev/null
if wait_until 15 converged below; then ok "a leaf of the TLS leaf converges over TLS"; else fail "leaf below converges" "$(tail -n 3 "$TMP/below.log")"; fi
leaf below_nocert --primaries "$LISTEN" --cluster-id tls1 --token-file "$TMP/token" --ca "$C/ca.crt"
sleep 1.5
following below_nocert && fail "the TLS leaf refuses a leaf without a certificate" || ok "the TLS leaf refuses a leaf without a certificate"

for n in "${!LPID[@]}"; do stop "${LPID[$n]}"; done
stop "$PID"
[ "$RC" = 0 ] && ok "the primary stops on SIGTERM with exit 0" || fail "primary stops" "exit $RC"
tap_end
