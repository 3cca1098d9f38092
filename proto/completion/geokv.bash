# bash completion for geokv (installed by meson into share/bash-completion/completions/geokv).
# Commands, subcommands and each command's options; bucket names from the server (a 1 s
# timeout, with the same connection settings: flags on the line, context, environment);
# context names from the context file; files for load.

_geokv_commands="bucket put create update get del purge keys history load watch dump snapshot status context help"
_geokv_common="-s --server --timeout --tls-ca --tls-cert --tls-key --stale --token-file --cluster --context -o --output --json -h --help"

_geokv_opts() {
	case "$1" in
	"bucket add") echo "--history --max-value --ttl --content-type" ;;
	"bucket rm") echo "-f --force" ;;
	get) echo "--rev --revision --raw" ;;
	load) echo "--format --key-field --value-field --header --max-errors --skip-bad --checkpoint --resume --batch --window --retry --progress-every -q --quiet" ;;
	watch) echo "--from-rev --count" ;;
	status) echo "--checksum" ;;
	"context add") echo "-f --force --description --select" ;;
	esac
}

# the connection flags already on the line, for the bucket lookup
_geokv_conn() {
	local i w
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case "$w" in
		-s|--server|--tls-ca|--tls-cert|--tls-key|--token-file|--context|--cluster)
			printf '%s %q ' "$w" "${COMP_WORDS[i + 1]}" ;;
		esac
	done
}

_geokv() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local i cmd="" sub="" npos=0
	COMPREPLY=()
	case "$prev" in
	--tls-ca|--tls-cert|--tls-key|--token-file|--checkpoint)
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	-o|--output) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
	--format) COMPREPLY=($(compgen -W "auto ndjson csv tsv" -- "$cur")); return ;;
	--context)
		COMPREPLY=($(compgen -W "$(geokv context ls -o json 2>/dev/null | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')" -- "$cur"))
		return ;;
	-s|--server|--timeout|--history|--max-value|--ttl|--content-type|--rev|--revision|--key-field|--value-field|--max-errors|--batch|--window|--progress-every|--from-rev|--count|--description|--cluster|--retry)
		return ;;
	esac
	for ((i = 1; i < COMP_CWORD; i++)); do
		local w=${COMP_WORDS[i]}
		case "$w" in
		-s|--server|--timeout|--tls-ca|--tls-cert|--tls-key|--token-file|--context|--cluster|-o|--output|--history|--max-value|--ttl|--content-type|--rev|--revision|--format|--key-field|--value-field|--max-errors|--batch|--window|--progress-every|--checkpoint|--from-rev|--count|--description|--retry)
			((i++)); continue ;;
		-*) continue ;;
		esac
		if [ -z "$cmd" ]; then cmd=$w
		elif [ -z "$sub" ] && { [ "$cmd" = bucket ] || [ "$cmd" = context ] || [ "$cmd" = snapshot ]; }; then sub=$w
		else npos=$((npos + 1)); fi
	done
	if [ -z "$cmd" ]; then
		if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$_geokv_common --version" -- "$cur"))
		else COMPREPLY=($(compgen -W "$_geokv_commands" -- "$cur")); fi
		return
	fi
	case "$cmd" in
	bucket|context|snapshot)
		if [ -z "$sub" ]; then
			case "$cmd" in
			bucket) COMPREPLY=($(compgen -W "add ls info rm" -- "$cur")) ;;
			context) COMPREPLY=($(compgen -W "add ls show use rm" -- "$cur")) ;;
			snapshot) COMPREPLY=($(compgen -W "save" -- "$cur")) ;;
			esac
			return
		fi
		cmd="$cmd $sub" ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_geokv_opts "$cmd") $_geokv_common" -- "$cur"))
		return
	fi
	case "$cmd" in
	"context use"|"context rm"|"context show")
		COMPREPLY=($(compgen -W "$(geokv context ls -o json 2>/dev/null | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')" -- "$cur")) ;;
	"snapshot save") COMPREPLY=($(compgen -f -- "$cur")) ;;
	load)
		if [ "$npos" -eq 0 ]; then
			COMPREPLY=($(compgen -W "$(eval "geokv $(_geokv_conn) --timeout 1s bucket ls -o json" 2>/dev/null | sed -n 's/.*"bucket":"\([^"]*\)".*/\1/p')" -- "$cur"))
		else COMPREPLY=($(compgen -f -- "$cur")); fi ;;
	"bucket info"|"bucket rm"|put|create|update|get|del|purge|keys|history|watch|dump)
		if [ "$npos" -eq 0 ]; then
			COMPREPLY=($(compgen -W "$(eval "geokv $(_geokv_conn) --timeout 1s bucket ls -o json" 2>/dev/null | sed -n 's/.*"bucket":"\([^"]*\)".*/\1/p')" -- "$cur"))
		fi ;;
	esac
}
complete -F _geokv geokv
