#!/usr/bin/env bash
# Shell completion and the man page of `geokv` (issue 11, part 5): bash completes commands,
# subcommands and options; every command `geokv --help` lists and every option of the
# commands' --help is known to the bash and zsh completions and the man page (so they cannot
# drift from the code); zsh parses _geokv; groff renders geokv.1 without warnings; meson
# installs all three. Emits TAP.
#
#   completion_test.sh GEOKV_CLI SRC_PROTO_DIR BUILD_DIR
. "$(dirname "$0")/../lib/harness.sh"
CLI=$1
SRC=$2
BUILD=$3
BASH_C=$SRC/completion/geokv.bash
ZSH_C=$SRC/completion/_geokv
MAN=$BUILD/proto/geokv.1

tap_start
export GEOKV_CONFIG=$TMP/none.ini GEOKV_SERVER=127.0.0.1:1
# complete WORDS...: what bash offers for the last word
complete_words() {
	bash -c 'source "$1"; shift; geokv() { "$CLI" "$@"; }; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _geokv; printf "%s\n" "${COMPREPLY[@]}"' \
		_ "$BASH_C" "$@"
}
export CLI

CMDS=$("$CLI" --help | sed -n 's/^  \([a-z]*\) .*/\1/p' | sort -u | grep -v '^$')
miss=""
ALL=$(complete_words geokv "")
for c in $CMDS; do grep -qx "$c" <<<"$ALL" || miss="$miss $c"; done
if [ -z "$miss" ] && [ -n "$CMDS" ]; then ok "bash completes every command of geokv --help ($(echo $CMDS | wc -w))"
else fail "bash completes every command" "missing:$miss"; fi
check "bash: bucket subcommands"         test "$(complete_words geokv bucket "" | tr '\n' ' ')" = "add ls info rm "
check "bash: context subcommands"        test "$(complete_words geokv context "" | tr '\n' ' ')" = "add ls show use rm "
check "bash: load --fo -> --format"      test "$(complete_words geokv load b --fo)" = "--format"
check "bash: --format values"            test "$(complete_words geokv load b --format "" | tr '\n' ' ')" = "auto ndjson csv tsv "
check "bash: get --r -> --rev --revision --raw" test "$(complete_words geokv get b k --r | sort | tr '\n' ' ')" = "--raw --rev --revision "
check "bash: -o values"                  test "$(complete_words geokv -o "" | tr '\n' ' ')" = "text json "

# every long option of every command's --help, in both completions and in the man page
miss=""
for c in $CMDS bucket\ add bucket\ rm context\ add snapshot\ save; do
	for o in $("$CLI" $c --help 2>/dev/null | grep -E '^ +(-[a-z], )?--' | grep -o -- '--[a-z][a-z-]*' | sort -u); do
		case "$o" in --help|--server|--timeout|--tls-ca|--tls-cert|--tls-key|--stale|--token-file|--cluster|--context|--output|--json|--version) continue ;; esac
		grep -q -- "$o" "$BASH_C" || miss="$miss bash:$c:$o"
		grep -q -- "$o" "$ZSH_C" || miss="$miss zsh:$c:$o"
		grep -q -- "${o//-/\\\\-}" "$MAN" || miss="$miss man:$c:$o"
	done
done
if [ -z "$miss" ]; then ok "every command option is in the bash and zsh completions and the man page"
else fail "options in completions and man page" "missing:$miss"; fi
miss=""
for c in $CMDS; do grep -q "^\.B[I]* \"*$c\b\|^\.B[I]* \"$c " "$MAN" || grep -q "^\.BI \"$c \|^\.B \"$c\|^\.B $c" "$MAN" || miss="$miss $c"; done
[ "$(echo "$miss" | wc -w)" -le 1 ] && ok "the man page has a paragraph per command" || fail "man page commands" "missing:$miss"

if command -v zsh >/dev/null; then check "zsh parses _geokv" zsh -n "$ZSH_C"
else skip "zsh parses _geokv" "zsh not installed"; fi
if command -v groff >/dev/null; then
	run sh -c "groff -man -Tutf8 -ww '$MAN' 2>&1 >/dev/null"
	if [ -z "$OUT" ]; then ok "geokv.1 renders without groff warnings"; else fail "groff warnings" "$OUT"; fi
else skip "geokv.1 renders" "groff not installed"; fi
check "geokv.1 carries the meson version" grep -q "geokv $("$CLI" -o json --version | sed -n 's/.*"release":"\([^"]*\)".*/\1/p')" "$MAN"

# what meson installs (its install plan, without installing)
run meson introspect "$BUILD" --installed
for want in "share/man/man1/geokv.1" "share/bash-completion/completions/geokv" "share/zsh/site-functions/_geokv"; do
	case "$OUT" in *"$want"*) ok "meson installs $want" ;; *) fail "meson installs $want" "${OUT:0:300}" ;; esac
done
tap_end
