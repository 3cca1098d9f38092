#!/usr/bin/env bash
# TLS on the client protocol, end to end: geokv-primary with deploy/certs.sh certificates,
# the `geokv` CLI over TLS (put/get/load), refusals with clear errors and exit 5 (no or the
# wrong CA, a plain client on the TLS port, a TLS client on a plain port, a missing client
# certificate), and the daemon serving on after each. Emits TAP.
#
#   tls.sh GEOKV_PRIMARY GEOKV_CLI CERTS_SH
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
CLI=$2
CERTS=$3
RUN_TIMEOUT=20

# start NAME ARGS...: a primary on a fresh data dir (harness.sh), its log shown when it fails
start() {
	local name=$1; shift
	spawn_primary "$name" "$TMP/$name" "$@" && return 0
	echo "# $name did not start:"; sed 's/^/#   /' "$TMP/$name.log"
	return 1
}

tap_start
"$CERTS" "$TMP/certs" >/dev/null || { echo "Bail out! certs.sh failed"; exit 1; }
C=$TMP/certs
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj "/CN=other CA" -keyout "$TMP/other.key" -out "$TMP/other.crt" 2>/dev/null

# on every address, so that 127.0.0.2 (not in the certificate) reaches it too
LISTEN_HOST=0.0.0.0 start tls --cert "$C/server.crt" --key "$C/server.key" || exit 1
T=$ADDR
check "start-up logs tls=on" grep -q "serving listen=0.0.0.0:${T#*:} tls=on" "$TMP/tls.log"

expect_rc "status over TLS (IP address checked against the certificate)" 0 "role:" \
	"$CLI" -s "$T" --tls-ca "$C/ca.crt" status
expect_rc "bucket add over TLS, host name verified (localhost)" 0 "" \
	"$CLI" -s "localhost:${T#*:}" --tls-ca "$C/ca.crt" bucket add users
expect_rc "put over TLS" 0 "" "$CLI" -s "$T" --tls-ca "$C/ca.crt" put users alice v1
expect_rc "get over TLS, CA from GEOKV_TLS_CA" 0 "v1" env GEOKV_TLS_CA="$C/ca.crt" "$CLI" -s "$T" get users alice
printf 'k1\tone\nk2\ttwo\n{"key":"k3","value":"three"}\n' >"$TMP/load.txt"
head -c 300000 /dev/zero | tr '\0' x >"$TMP/big"
python3 -c "import json; print(json.dumps({'key':'big','value':open('$TMP/big').read()}))" >>"$TMP/load.txt"
expect_rc "load over TLS (records over 16 KiB)" 0 "loaded 4 keys" "$CLI" -s "$T" --tls-ca "$C/ca.crt" load users "$TMP/load.txt"
run "$CLI" -s "$T" --tls-ca "$C/ca.crt" get --raw users big
if [ "$RC" -eq 0 ] && [ "${#OUT}" -eq 300000 ]; then ok "a 300 KB value read back over TLS"; else fail "a 300 KB value read back over TLS" "rc=$RC len=${#OUT}"; fi
expect_rc "get of a loaded key" 0 "three" "$CLI" -s "$T" --tls-ca "$C/ca.crt" get users k3

expect_rc "without the CA: plain client refused, exit 5, says TLS is required" 5 "requires TLS" \
	env -u GEOKV_TLS_CA "$CLI" -s "$T" get users alice
expect_rc "with another CA: refused, exit 5, says why" 5 "not correctly signed by the trusted CA" \
	"$CLI" -s "$T" --tls-ca "$TMP/other.crt" get users alice
expect_rc "an address the certificate does not carry: refused, exit 5" 5 "does not name this IP" \
	"$CLI" -s "127.0.0.2:${T#*:}" --tls-ca "$C/ca.crt" get users alice
expect_rc "an unreadable CA file: usage error, exit 2" 2 "TLS files" \
	"$CLI" -s "$T" --tls-ca "$TMP/nosuch.crt" get users alice
run python3 - "${T#*:}" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(struct.pack("<IHHQ", 3, 1, 0, 0) + b"\x01\x00\x00")   # a plain frame header + junk
data = b""
try:
    while True:
        b = s.recv(4096)
        if not b: break
        data += b
except socket.timeout:
    print("hang"); sys.exit(1)
print("closed" if b"requires TLS" in data else "no message: %r" % data)
sys.exit(0 if b"requires TLS" in data else 1)
PY
if [ "$RC" -eq 0 ]; then ok "raw plaintext bytes: a plain error frame and close, no hang"; else fail "raw plaintext bytes: a plain error frame and close, no hang" "$OUT"; fi
check "the refusals are logged" grep -q "WARN server plain client on the TLS listener" "$TMP/tls.log"
expect_rc "still serving over TLS after the refusals" 0 "v1" "$CLI" -s "$T" --tls-ca "$C/ca.crt" get users alice

# client certificates
start mtls --cert "$C/server.crt" --key "$C/server.key" --set tls.client_ca="$C/ca.crt" || exit 1
M=$ADDR
expect_rc "client_ca: no client certificate, refused, exit 5" 5 "client certificate" \
	"$CLI" -s "$M" --tls-ca "$C/ca.crt" status
expect_rc "client_ca: with a client certificate, served" 0 "role:" \
	"$CLI" -s "$M" --tls-ca "$C/ca.crt" --tls-cert "$C/server.crt" --tls-key "$C/server.key" status
expect_rc "client_ca: a certificate of another CA, refused" 5 "TLS" \
	"$CLI" -s "$M" --tls-ca "$C/ca.crt" --tls-cert "$TMP/other.crt" --tls-key "$TMP/other.key" status

# a plain primary: a TLS client is told at once, a token without TLS is warned about
printf 's3cret\n' >"$TMP/token"; chmod 600 "$TMP/token"
start plain --token-file "$TMP/token" || exit 1
P=$ADDR
check "a token without TLS: WARN at start-up" grep -q "WARN server HELLO tokens travel in clear" "$TMP/plain.log"
SECONDS=0
expect_rc "a TLS client on a plain port: refused at once, exit 5" 5 "does not speak TLS" \
	"$CLI" -s "$P" --tls-ca "$C/ca.crt" status
check "... within a second, not a timeout" test "$SECONDS" -le 1
expect_rc "the plain primary still serves plain clients" 0 "role:" env GEOKV_TOKEN=s3cret "$CLI" -s "$P" status

start badcert --cert "$C/server.crt" --key "$TMP/other.key" --log-level error >/dev/null
if grep -q "cannot load TLS files" "$TMP/badcert.log"; then ok "a key not matching the certificate: start-up fails with a clear error"; else
	sleep 0.5; if grep -q "cannot load TLS files" "$TMP/badcert.log"; then ok "a key not matching the certificate: start-up fails with a clear error"; else fail "bad key refused" "$(cat "$TMP/badcert.log")"; fi; fi
expect_rc "cert without key: config error, exit 2" 2 "[tls] cert and key go together" \
	"$PRIM" --data "$TMP/x" --cert "$C/server.crt"

tap_end
