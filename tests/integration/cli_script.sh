#!/usr/bin/env bash
# The `geokv` CLI for scripts (issue 11, part 1), against a real geokv-primary over TLS with a
# token: --version on the CLI and the daemons, -o json / --json on every command (each line
# parsed as JSON and its fields checked), credentials from --token-file and the environment,
# named contexts (add/ls/show/use/rm, precedence over the environment). Emits TAP.
#
#   cli_script.sh GEOKV_PRIMARY GEOKV_CLI CERTS_SH GEOKV_GATEWAY
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
CLI=$(realpath "$2")
CERTS=$3
GW=$4
RUN_TIMEOUT=30

tap_start
"$CERTS" "$TMP/certs" >/dev/null || { echo "Bail out! certs.sh failed"; exit 1; }
C=$TMP/certs
printf 's3cret\n' >"$TMP/token"
export GEOKV_CONFIG=$TMP/contexts.ini
unset GEOKV_SERVER GEOKV_TLS_CA GEOKV_TLS_CERT GEOKV_TLS_KEY GEOKV_TOKEN GEOKV_TOKEN_FILE \
	GEOKV_CONTEXT GEOKV_CLUSTER

# json_ok PYEXPR: stdin is NDJSON; PYEXPR over `rows` (a list of the parsed lines) must be true
json_ok() { python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines() if l.strip()]
sys.exit(0 if eval(sys.argv[1]) else 1)' "$1"; }
# jexpect NAME PYEXPR CMD...: CMD exits 0 and its stdout satisfies PYEXPR
jexpect() {
	local name=$1 expr=$2 out; shift 2
	out=$("$@" 2>"$TMP/stderr")
	local rc=$?
	if [ $rc -eq 0 ] && printf '%s' "$out" | json_ok "$expr"; then ok "$name"
	else fail "$name" "rc=$rc" "stdout: ${out:0:300}" "stderr: $(head -c 300 "$TMP/stderr")"; fi
}

# ---- --version --------------------------------------------------------------------------------
VER=$(sed -n "s/^ *version : '\(.*\)',/\1/p" "$(dirname "$0")/../../meson.build")
expect_rc "geokv --version names the meson version"         0 "geokv $VER" "$CLI" --version
expect_rc "geokv-primary --version"                         0 "geokv-primary $VER" "$PRIM" --version
expect_rc "geokv-gateway --version"                         0 "geokv-gateway $VER" "$GW" --version
jexpect "geokv --version -o json" "rows[0]['release'] == '$VER'" "$CLI" -o json --version

# ---- a primary with TLS and a token ---------------------------------------------------------------
spawn_primary p "$TMP/data" --cert "$C/server.crt" --key "$C/server.key" --token-file "$TMP/token" ||
	{ echo "Bail out! primary did not start"; cat "$TMP/p.log"; exit 1; }
A=$ADDR
G=("$CLI" -s "$A" --tls-ca "$C/ca.crt")

expect_rc "no token: refused (exit 1)"                     1 "authentication failed" "${G[@]}" status
expect_rc "--token-file"                                   0 "role:" "${G[@]}" --token-file "$TMP/token" status
expect_rc "GEOKV_TOKEN_FILE"                               0 "role:" env GEOKV_TOKEN_FILE="$TMP/token" "${G[@]}" status
expect_rc "GEOKV_TOKEN"                                    0 "role:" env GEOKV_TOKEN=s3cret "${G[@]}" status
expect_rc "a missing token file is a usage error"          2 "token file" "${G[@]}" --token-file "$TMP/nope" status
printf 'wrong\n' >"$TMP/wrong"
expect_rc "--token-file beats GEOKV_TOKEN"                 1 "authentication failed" env GEOKV_TOKEN=s3cret "${G[@]}" --token-file "$TMP/wrong" status

# ---- contexts -------------------------------------------------------------------------------------
expect_rc "context ls on no file: empty"                   0 "" "$CLI" context ls
(cd "$TMP" && "$CLI" context add prod -s "$A" --tls-ca certs/ca.crt --token-file token \
	--description "test group" >/dev/null 2>&1)
check "context add (relative files)"                       test -s "$GEOKV_CONFIG"
check "context files are stored absolute"                  grep -q "tls_ca = $C/ca.crt" "$GEOKV_CONFIG"
check "the context file is private (0600)"                 test "$(stat -c %a "$GEOKV_CONFIG")" = 600
expect_rc "first context becomes current"                  0 "* prod" "$CLI" context ls
expect_rc "the current context connects (TLS + token)"     0 "role:" "$CLI" status
expect_rc "context add again without -f: exit 4"           4 "exists" "$CLI" context add prod -s 127.0.0.1:1
"$CLI" context add dead -s 127.0.0.1:1 --timeout 1s >/dev/null 2>&1
expect_rc "--context picks another context"                5 "127.0.0.1:1" "$CLI" --context dead status
expect_rc "GEOKV_CONTEXT picks another context"            5 "127.0.0.1:1" env GEOKV_CONTEXT=dead "$CLI" status
expect_rc "GEOKV_SERVER beats the current context"         5 "127.0.0.1:1" env GEOKV_SERVER=127.0.0.1:1 "$CLI" status
expect_rc "an explicit context beats GEOKV_SERVER"         0 "role:" env GEOKV_SERVER=127.0.0.1:1 "$CLI" --context prod status
expect_rc "a flag beats the context"                       5 "127.0.0.1:1" "$CLI" -s 127.0.0.1:1 status
expect_rc "context use"                                    0 "" "$CLI" context use dead
expect_rc "context show: the current one"                  0 "127.0.0.1:1" "$CLI" context show
jexpect "context ls -o json" "[r['name'] for r in rows] == ['prod', 'dead'] and rows[1]['current']" "$CLI" context ls -o json
expect_rc "context rm"                                     0 "" "$CLI" context rm dead
expect_rc "a removed current context: none is current"     0 "  prod" "$CLI" context ls
expect_rc "an unknown context: exit 2"                     2 "no context" "$CLI" --context nope status
expect_rc "context use prod"                               0 "" "$CLI" context use prod

# ---- -o json on every command -----------------------------------------------------------------------
jexpect "bucket add -o json"    "rows[0]['revision'] >= 1"                       "$CLI" bucket add users --history 4 -o json
jexpect "put --json"            "len(rows) == 1 and rows[0]['revision'] >= 2"    "$CLI" --json put users alice v1
R1=$("$CLI" put users alice v2)
printf '\377\000\001' | "$CLI" put users bin - >/dev/null
jexpect "create -o json"        "rows[0]['revision'] > $R1"                      "$CLI" create users bob b -o json
jexpect "update -o json"        "rows[0]['revision'] > $R1"                      "$CLI" update users alice v3 "$R1" -o json
jexpect "get -o json"           "rows[0]['key'] == 'alice' and rows[0]['value'] == 'v3' and rows[0]['op'] == 'PUT' and rows[0]['bucket'] == 'users'" "$CLI" get users alice -o json
jexpect "get --rev N -o json"   "rows[0]['value'] == 'v2' and rows[0]['revision'] == $R1" "$CLI" get users alice --rev "$R1" -o json
jexpect "get binary: value_b64" "rows[0]['value_b64'] == '/wAB' and 'value' not in rows[0]" "$CLI" get users bin -o json
jexpect "keys -o json: NDJSON"  "[r['key'] for r in rows] == ['alice', 'bin', 'bob']" "$CLI" keys users -o json
jexpect "history -o json"       "[r['value'] for r in rows] == ['v1', 'v2', 'v3']" "$CLI" history users alice -o json
jexpect "bucket ls -o json"     "rows[0]['bucket'] == 'users' and rows[0]['keys'] == 3 and rows[0]['history'] == 4" "$CLI" bucket ls -o json
jexpect "bucket info -o json"   "rows[0]['bucket'] == 'users' and rows[0]['max_value'] == 1048576" "$CLI" bucket info users -o json
jexpect "status -o json"        "rows[0]['role'] == 'primary' and rows[0]['leader'] and rows[0]['members'][0]['role'] == 'leader'" "$CLI" status -o json
jexpect "status --checksum -o json" "len(rows[0]['members'][0]['checksum']) == 16" "$CLI" status --checksum -o json
jexpect "del -o json"           "rows[0]['revision'] > 0"                        "$CLI" del users bob -o json
jexpect "purge -o json"         "rows[0]['revision'] > 0"                        "$CLI" purge users bin -o json
jexpect "bucket rm -f -o json"  "rows[0]['revision'] > 0"                        "$CLI" bucket add tmp -o json
jexpect "bucket rm -f -o json"  "rows[0]['revision'] > 0"                        "$CLI" bucket rm tmp -f -o json
expect_rc "errors stay on stderr with their exit code" 3 "key not found" "$CLI" get users bob -o json
expect_rc "-o with a bad format: exit 2"               2 "bad -o" "$CLI" -o yaml status
expect_rc "--raw with -o json: exit 2"                 2 "exclude" "$CLI" get users alice --raw -o json

stop "$PID"
tap_end
