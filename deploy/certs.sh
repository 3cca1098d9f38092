#!/usr/bin/env bash
# Development certificates for a local geokv cluster: a private CA and one ECDSA P-256 server
# certificate valid for localhost and 127.0.0.1 (plus any extra names given), signed by it.
#
#   deploy/certs.sh DIR [NAME|IP ...]
#
# Writes DIR/ca.crt, DIR/ca.key, DIR/server.crt (leaf then CA), DIR/server.key. Idempotent:
# existing files are kept, so re-running never invalidates a running cluster's certificates;
# delete DIR to start over. P-256 because mbedTLS signs with it ~10x faster than with RSA-2048
# (see docs/gateway.md). Not for production: the CA key sits beside the certificates.
set -euo pipefail

dir=${1:?usage: deploy/certs.sh DIR [NAME|IP ...]}
shift
mkdir -p "$dir"
umask 077

if [ ! -s "$dir/ca.key" ] || [ ! -s "$dir/ca.crt" ]; then
	openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 \
		-subj "/CN=geokv dev CA" -out "$dir/ca.crt" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign"
fi

if [ ! -s "$dir/server.key" ] || [ ! -s "$dir/server.crt" ]; then
	san="DNS:localhost,IP:127.0.0.1,IP:::1"
	for n in "$@"; do
		if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+=",IP:$n"; else san+=",DNS:$n"; fi
	done
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/server.key" 2>/dev/null
	# PKCS#8 so that every TLS library (mbedTLS, OpenSSL, Go) reads it.
	openssl pkcs8 -topk8 -nocrypt -in "$tmp/server.key" -out "$dir/server.key"
	openssl req -new -key "$dir/server.key" -subj "/CN=localhost" -out "$tmp/server.csr"
	printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" \
		>"$tmp/ext.cnf"
	openssl x509 -req -in "$tmp/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
		-CAcreateserial -days 825 -sha256 -extfile "$tmp/ext.cnf" -out "$tmp/leaf.crt" 2>/dev/null
	cat "$tmp/leaf.crt" "$dir/ca.crt" >"$dir/server.crt"
	rm -f "$dir/ca.srl"
fi
chmod 600 "$dir"/*.key
chmod 644 "$dir"/*.crt
echo "certs: $dir (ca.crt, server.crt, server.key)"
