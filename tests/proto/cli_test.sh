#!/usr/bin/env bash
# geokv CLI against the fake server (fake_serverd): outputs, exit codes, load. TAP output.
# Usage: cli_test.sh GEOKV FAKE_SERVERD
set -u
geokv=$1 fake=$2
tmp=$(mktemp -d)
coproc FAKE { exec "$fake" --page 2; }
fake_pid=$FAKE_PID
trap 'kill "$fake_pid" 2>/dev/null; wait "$fake_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
read -r port <&"${FAKE[0]}"
export GEOKV_SERVER=127.0.0.1:$port
n=0 fail=0
# t NAME WANT_EXIT CMD... : runs CMD, stdout in $tmp/out, stderr in $tmp/err
t() {
	local name=$1 want=$2; shift 2
	n=$((n+1))
	"$@" >"$tmp/out" 2>"$tmp/err"; local got=$?
	if [ "$got" = "$want" ]; then echo "ok $n - $name"
	else echo "not ok $n - $name (exit $got, want $want: $(head -c 300 "$tmp/err"))"; fail=$((fail+1)); fi
}
# o NAME EXPECTED: the last command's stdout equals EXPECTED
o() {
	n=$((n+1))
	if [ "$(cat "$tmp/out")" = "$2" ]; then echo "ok $n - $1"
	else echo "not ok $n - $1 (got '$(head -c 300 "$tmp/out")')"; fail=$((fail+1)); fi
}
# e NAME PATTERN: the last command's stderr matches PATTERN
e() {
	n=$((n+1))
	if grep -qE "$2" "$tmp/err"; then echo "ok $n - $1"
	else echo "not ok $n - $1 (stderr '$(head -c 300 "$tmp/err")')"; fail=$((fail+1)); fi
}

t "bucket add" 0 "$geokv" bucket add cards --history 5 --ttl 24h --max-value 64K
o "bucket add prints its revision" 1
t "put" 0 "$geokv" put cards user.1 hello
o "put prints the revision" 2
printf 'from\nstdin' >"$tmp/in"
t "put from stdin" 0 "$geokv" put cards user.2 - <"$tmp/in"
t "get --raw is the exact bytes" 0 "$geokv" get cards user.2 --raw
o "stdin value kept newline" "$(printf 'from\nstdin')"
t "get with header" 0 "$geokv" get cards user.1
t "get missing key exits 3" 3 "$geokv" get cards nope
e "error line format" '^geokv: nope: key not found'
t "create existing exits 4" 4 "$geokv" create cards user.1 x
t "update wrong revision exits 4" 4 "$geokv" update cards user.1 v2 99
t "update right revision" 0 "$geokv" update cards user.1 v2 2
t "get --revision" 0 "$geokv" get cards user.1 --revision 2 --raw
o "old value" hello
t "keys pages through all" 0 "$geokv" keys cards
o "keys sorted" "$(printf 'user.1\nuser.2')"
t "keys with prefix" 0 "$geokv" keys cards user.2
o "prefix filters" user.2
t "history" 0 "$geokv" history cards user.1
n=$((n+1)); [ "$(wc -l <"$tmp/out")" = 3 ] && echo "ok $n - history lists 2 revisions" || { echo "not ok $n - history lines"; fail=$((fail+1)); }
t "del" 0 "$geokv" del cards user.2
t "get deleted exits 3" 3 "$geokv" get cards user.2
t "purge" 0 "$geokv" purge cards user.1
t "bucket ls" 0 "$geokv" bucket ls
t "bucket info" 0 "$geokv" bucket info cards
t "bucket info missing exits 3" 3 "$geokv" bucket info nope
t "bucket rm without -f and no tty is usage" 2 "$geokv" bucket rm cards </dev/null
t "status" 0 "$geokv" status
t "bad bucket name exits 6" 6 "$geokv" put bad.bucket k v
e "names the bucket" '^geokv: bad.bucket: invalid bucket name'
t "bad key exits 6" 6 "$geokv" put cards .k v
t "unknown command is usage" 2 "$geokv" frob
t "missing argument is usage" 2 "$geokv" get cards
t "unknown option is usage" 2 "$geokv" get cards k --frob
t "option of another command is usage" 2 "$geokv" put cards k v --raw
t "--help" 0 "$geokv" --help
t "subcommand --help" 0 "$geokv" load --help
t "bad --timeout is usage" 2 "$geokv" --timeout xyz status
t "bad server list is usage" 2 "$geokv" -s 'a::b' status
t "unreachable server exits 5" 5 "$geokv" -s 127.0.0.1:1 status
e "says connection refused" 'connection refused'

printf 'a\t1\n{"key":"b","value":"two"}\n\n{"key":"c","value":{"x":1}}\nd\tfour\twith tab\n' >"$tmp/load"
t "load mixed NDJSON and TSV" 0 "$geokv" load cards "$tmp/load"
o "load summary" "$(sed -E 's/in [0-9.]+s \([0-9]+ keys\/s\)/in T/' "$tmp/out" | grep -q 'loaded 4 keys in T' && cat "$tmp/out")"
t "json value stored as JSON text" 0 "$geokv" get cards c --raw
o "compact JSON" '{"x":1}'
t "tsv value keeps later tabs" 0 "$geokv" get cards d --raw
o "tab kept" "$(printf 'four\twith tab')"
printf 'e\t1\nnotab\nf\t2\n' >"$tmp/bad"
t "bad line stops the load (exit 6)" 6 "$geokv" load cards "$tmp/bad"
e "names the line" ':2: expected key<TAB>value'
t "lines before the bad one are loaded" 0 "$geokv" get cards e --raw
t "lines after it are not" 3 "$geokv" get cards f
t "--skip-bad carries on" 0 "$geokv" load cards "$tmp/bad" --skip-bad
t "line after the bad one loaded" 0 "$geokv" get cards f --raw
seq 1 5000 | awk '{printf "k.%d\tvalue-%d\n", $1, $1}' >"$tmp/big"
t "load 5000 keys from stdin in small batches" 0 "$geokv" load cards - --batch 100 --window 8 <"$tmp/big"
o "all acknowledged" "$(grep -q '^loaded 5000 keys' "$tmp/out" && cat "$tmp/out")"
t "load into a missing bucket exits 3" 3 "$geokv" load nobucket "$tmp/big"

echo "1..$n"
[ "$fail" = 0 ]
