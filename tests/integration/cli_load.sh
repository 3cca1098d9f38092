#!/usr/bin/env bash
# `geokv load` (issue 11, part 3) against a real geokv-primary over TLS: NDJSON (value,
# value_b64, non-string values), CSV (header, quotes, a field over two lines), TSV by field
# names and numbers, gzip and zstd input by magic bytes, bad lines reported line by line with
# --max-errors / --skip-bad, progress lines off a terminal, --quiet, the JSON summary,
# bounded memory on 1,000,000 keys, and kill -9 of the primary during a load: the first line
# not acknowledged is exact and --resume from the checkpoint finishes the load. Emits TAP.
#
#   cli_load.sh GEOKV_PRIMARY GEOKV_CLI CERTS_SH
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1
CLI=$(realpath "$2")
CERTS=$3
RUN_TIMEOUT=120

tap_start
"$CERTS" "$TMP/certs" >/dev/null || { echo "Bail out! certs.sh failed"; exit 1; }
C=$TMP/certs
export GEOKV_CONFIG=$TMP/contexts.ini GEOKV_TLS_CA=$C/ca.crt
unset GEOKV_TOKEN GEOKV_TOKEN_FILE GEOKV_CONTEXT
D=$TMP/data
start() { spawn_primary "$1" "$D" --cert "$C/server.crt" --key "$C/server.key" && export GEOKV_SERVER=$ADDR; }
start p1 || { echo "Bail out! primary did not start"; cat "$TMP/p1.log"; exit 1; }
"$CLI" bucket add f >/dev/null
# val KEY WANT: the stored bytes of KEY in bucket f equal WANT exactly
val() { local got; got=$("$CLI" get f "$1" --raw; echo x); [ "${got%x}" = "$2" ]; }

# ---- formats ----------------------------------------------------------------------------------------
printf '{"key":"j1","value":"v1"}\n{"key":"j2","value_b64":"/wAB"}\n{"key":"j3","value":{"a":[1,2]}}\n\n' >"$TMP/a.ndjson"
expect_rc "ndjson by extension"            0 "loaded 3 keys" "$CLI" load f "$TMP/a.ndjson"
check "ndjson string value"                val j1 v1
check "ndjson value_b64 decoded"           test "$("$CLI" get f j2 --raw | od -An -tx1 | tr -d ' \n')" = ff0001
check "ndjson non-string stored as compact JSON" val j3 '{"a":[1,2]}'
printf '{"id":"n1","payload":"p1"}\n' >"$TMP/b.jsonl"
expect_rc "ndjson --key-field/--value-field" 0 "loaded 1 key" "$CLI" load f "$TMP/b.jsonl" --key-field id --value-field payload
check "  value from the named field"       val n1 p1
printf 'key,value\nc1,"hello, world"\nc2,"two\nlines ""quoted"""\nc3,plain\n' >"$TMP/a.csv"
expect_rc "csv with --header"              0 "loaded 3 keys" "$CLI" load f "$TMP/a.csv" --header
check "csv quoted comma"                   val c1 "hello, world"
check "csv quoted field over two lines, doubled quotes" val c2 $'two\nlines "quoted"'
printf 'x,c4,y,v4\n' >"$TMP/cols.csv"
expect_rc "csv by column numbers"          0 "loaded 1 key" "$CLI" load f "$TMP/cols.csv" --key-field 2 --value-field 4
check "  value from column 4"              val c4 v4
printf 'name\tdata\textra\nt1\tx1\ty\n' >"$TMP/a.tsv"
expect_rc "tsv by header names"            0 "loaded 1 key" "$CLI" load f "$TMP/a.tsv" --key-field name --value-field data
check "  value from the named column"      val t1 x1
printf 't2\tall\tthe\trest\n' >"$TMP/plain.txt"
expect_rc "tsv classic: the value is the rest of the line" 0 "loaded 1 key" "$CLI" load f "$TMP/plain.txt"
check "  rest of the line"                 val t2 $'all\tthe\trest'
printf 'g1\tgz\n' | gzip >"$TMP/in.gz"
expect_rc "gzip by magic bytes (no extension hint)" 0 "loaded 1 key" "$CLI" load f "$TMP/in.gz"
check "  gzip value"                       val g1 gz
expect_rc "gzip on stdin"                  0 "loaded 1 key" sh -c "printf 'g2\tgz2\n' | gzip | '$CLI' load f -"
if command -v zstd >/dev/null; then
	printf '{"key":"z1","value":"zs"}\n' | zstd -q >"$TMP/in.ndjson.zst"
	expect_rc "zstd by magic bytes, format from the name before .zst" 0 "loaded 1 key" "$CLI" load f "$TMP/in.ndjson.zst"
	check "  zstd value"               val z1 zs
else
	skip "zstd input" "no zstd program"
fi
seq 1 20000 | sed "s/^/t/; s/$/\tv/" | gzip | head -c 3000 >"$TMP/trunc.gz"
expect_rc "truncated gzip: exit 6 with a reason" 6 "corrupt or truncated" "$CLI" load f "$TMP/trunc.gz"
expect_rc "--header on ndjson: usage error" 2 "--header" "$CLI" load f "$TMP/a.ndjson" --header
expect_rc "csv header without the named column" 6 'no column "nope"' "$CLI" load f "$TMP/a.csv" --key-field nope

# ---- validation, line by line --------------------------------------------------------------------------
"$CLI" bucket add small --max-value 8 >/dev/null
printf 'k1\tv\nbad key\tv\n{"key":1,"value":"x"}\n{"key":"k2"\nk3\t0123456789\nk4\tv\n' >"$TMP/bad.txt"
expect_rc "first bad line stops the load (exit 6) naming line 2" 6 "bad.txt:2: invalid key" "$CLI" load small "$TMP/bad.txt"
expect_rc "  and the line before it is loaded" 0 "v" "$CLI" get small k1 --raw
run "$CLI" load small "$TMP/bad.txt" --skip-bad
if [ "$RC" -eq 0 ] && [[ $OUT == *"bad.txt:2: invalid key"* && $OUT == *"bad.txt:3: JSON object needs a string \"key\""* &&
	$OUT == *"bad.txt:4: invalid JSON"* && $OUT == *"bad.txt:5: value of 10 bytes is over the bucket's max value (8)"* &&
	$OUT == *"loaded 2 keys"*"4 bad lines"* ]]; then
	ok "--skip-bad reports every bad line with its number and reason (exit 0)"
else fail "--skip-bad reports every bad line" "rc=$RC" "$OUT"; fi
expect_rc "--max-errors 2 stops at the third bad line" 6 "more than 2 bad lines" "$CLI" load small "$TMP/bad.txt" --max-errors 2
expect_rc "--max-errors 4 loads the rest"  0 "loaded 2 keys" "$CLI" load small "$TMP/bad.txt" --max-errors 4
run "$CLI" load small "$TMP/bad.txt" --skip-bad -o json -q
if [ "$RC" -eq 0 ] && printf '%s' "$OUT" | grep -v '^geokv:' | python3 -c '
import json, sys; j = json.loads(sys.stdin.read())
sys.exit(0 if (j["written"], j["skipped"], j["failed"], j["lines"], j["exit"]) == (2, 4, 0, 6, 0) else 1)'; then
	ok "JSON summary: written, skipped, failed, lines, exit"
else fail "JSON summary" "$OUT"; fi

# ---- progress, bounded memory, speed ------------------------------------------------------------------------
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write("user.%010d.card%06d\t%s\n" % (i, i % 999983, ("%08d" % i) * 12 + "abcd"))
' "$TMP/keys.tsv" 1000000
gzip -1 -c "$TMP/keys.tsv" >"$TMP/keys.tsv.gz"
"$CLI" bucket add bulk >/dev/null
if [ -x /usr/bin/time ]; then
	/usr/bin/time -f "maxrss_kb %M" "$CLI" load bulk "$TMP/keys.tsv.gz" --progress-every 200ms \
		>"$TMP/load.out" 2>"$TMP/load.err"
	RC=$?
	RSS=$(sed -n 's/^maxrss_kb //p' "$TMP/load.err")
	if [ "$RC" -eq 0 ] && grep -q "loaded 1000000 keys" "$TMP/load.out" && [ "${RSS:-999999}" -lt 65536 ]; then
		ok "1,000,000 keys from gzip, CLI peak RSS ${RSS} KiB (< 64 MiB): $(cat "$TMP/load.out")"
	else fail "1,000,000 keys, bounded memory" "rc=$RC rss=$RSS" "$(cat "$TMP/load.out")"; fi
else
	"$CLI" load bulk "$TMP/keys.tsv.gz" --progress-every 200ms >"$TMP/load.out" 2>"$TMP/load.err"
	skip "CLI peak RSS" "no /usr/bin/time"
fi
if grep -Eq '^progress: [0-9]+ keys, [0-9]+ bytes, [0-9.]+%, .*keys/s, 0 errors$' "$TMP/load.err"; then
	ok "off a terminal: plain periodic progress lines with %, rate, errors"
else fail "periodic progress lines" "$(head -c 300 "$TMP/load.err")"; fi
check "the bucket holds 1,000,000 keys" test "$("$CLI" bucket info bulk -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"])')" = 1000000
run sh -c "'$CLI' load bulk '$TMP/a.tsv' --key-field name --value-field data -q --progress-every 1ms 2>&1 >/dev/null"
if [ "$RC" -eq 0 ] && [ -z "$OUT" ]; then ok "--quiet: nothing on stderr"; else fail "--quiet" "$OUT"; fi

# ---- kill -9 during a load: exact first unacknowledged line, --resume -------------------------------------
head -n 300000 "$TMP/keys.tsv" >"$TMP/k300.tsv"
"$CLI" bucket add r --history 5 >/dev/null
revision() { "$CLI" status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])'; }
R0=$(revision)
spawn l1 "$CLI" --timeout 2s load r "$TMP/k300.tsv" --checkpoint "$TMP/ckpt" --window 8 --progress-every 100ms --retry 0
LPID=$SPAWNED
for _ in $(seq 1 400); do
	n=$(sed -n 's/^progress: \([0-9]*\) keys.*/\1/p' "$TMP/l1.log" | tail -n 1)
	[ "${n:-0}" -ge 30000 ] && break
	sleep 0.02
done
stop "$PID" 9
wait "$LPID"; LRC=$?
FIRST=$(sed -n 's/.*first line not acknowledged: \([0-9]*\).*/\1/p' "$TMP/l1.log")
THROUGH=$(sed -n 's/^acked_through //p' "$TMP/ckpt")
if [ "$LRC" -eq 5 ] && [ -n "$FIRST" ] && [ "$THROUGH" -eq $((FIRST - 1)) ]; then
	ok "load cut by kill -9: exit 5, first line not acknowledged $FIRST, checkpoint through $THROUGH"
else fail "load cut by kill -9" "rc=$LRC first=$FIRST through=$THROUGH" "$(tail -c 400 "$TMP/l1.log")"; fi
start p2 || fail "restart" "$(tail -n 5 "$TMP/p2.log")"
"$CLI" keys r >"$TMP/present.txt"
head -n "$((FIRST - 1))" "$TMP/k300.tsv" | cut -f1 >"$TMP/before.txt"
MISSING=$(sort "$TMP/before.txt" | comm -23 - "$TMP/present.txt" | wc -l)
check "every line before the first unacknowledged one is present ($(wc -l <"$TMP/before.txt") lines, $MISSING missing)" test "$MISSING" -eq 0
expect_rc "--resume finishes the load"      0 "loaded" "$CLI" load r "$TMP/k300.tsv" --checkpoint "$TMP/ckpt" --resume -q
# the resumed run is the same session: the batches the first run had applied without
# hearing back are dropped by the group, so every key was written exactly once
R1=$(revision)
check "kill -9 + --resume: every key written exactly once (revision +$((R1 - R0)) for 300000 keys; $(wc -l <"$TMP/present.txt") present after the crash, $((FIRST - 1)) acknowledged)" test "$((R1 - R0))" -eq 300000
run "$CLI" load r "$TMP/k300.tsv" --checkpoint "$TMP/ckpt" --resume -q -o json
if printf '%s' "$OUT" | python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(0 if j["written"] == 0 and j["resumed_after_line"] == 300000 else 1)'; then
	ok "a finished checkpoint resumes to nothing"
else fail "a finished checkpoint resumes to nothing" "$OUT"; fi
check "all 300,000 keys present after --resume" test "$("$CLI" keys r | wc -l)" -eq 300000
printf 'other\tfile\n' >"$TMP/other.tsv"
expect_rc "a checkpoint of another input is refused" 2 "not this input" "$CLI" load r "$TMP/other.tsv" --checkpoint "$TMP/ckpt" --resume
expect_rc "--resume without --checkpoint: usage" 2 "--checkpoint" "$CLI" load r "$TMP/k300.tsv" --resume

stop "$PID"
tap_end
