#!/usr/bin/env bash
# The files in deploy/, checked by the tools that consume them (docs/deploy.md):
#   nginx -t, haproxy -c          deploy/gtm/nginx.conf, haproxy.cfg (temp copies, dev certs;
#                                 nginx -t binds its listeners, so the copy's is a free port)
#   systemd-analyze verify        deploy/systemd/*.service (temp copies whose ExecStart is the
#                                 built daemon), systemd-sysusers for geokv.sysusers.conf
#   python3-yaml                  deploy/k8s/*.yaml, deploy/gtm/kubernetes-probes.yaml
#                                 (manifests.py: structure, probes, ports, peers)
#   the daemons themselves        deploy/*.ini values against --help defaults, and each file
#                                 started with -c; the StatefulSet's pod run on loopback with
#                                 its own commands and probes; DNS-name peers forming a group
#   promtool check metrics        the primary's and the gateway's /metrics
#   (static)                      deploy/container/Dockerfile; its entrypoint and healthcheck
#                                 scripts run against the built daemons
# A check is skipped only when its tool cannot be had (deploy/deps.sh test installs them all).
#
#   check.sh GEOKV_PRIMARY GEOKV_GATEWAY GEOKV_CLI REPO_ROOT
. "$(dirname "$0")/../lib/harness.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
PRIM=$(realpath "$1") GW=$(realpath "$2") CLI=$(realpath "$3") ROOT=$(realpath "$4")
D=$ROOT/deploy
BUILD=$(cd "$(dirname "$PRIM")/.." && pwd)
tap_start

# tool NAME: its path (also in the sbin directories a non-root PATH may lack)
tool() {
	command -v "$1" 2>/dev/null && return 0
	local d
	for d in /usr/sbin /sbin /usr/local/sbin; do [ -x "$d/$1" ] && { echo "$d/$1"; return 0; }; done
	return 1
}
# copy_with SRC DST FROM TO [FROM TO]...: DST is SRC with each FROM replaced; fails (naming
# it) when SRC does not contain a FROM, so a renamed path cannot slip past the check
copy_with() {
	local src=$1 dst=$2 text from to; shift 2
	text=$(<"$src")
	while [ $# -ge 2 ]; do
		from=$1 to=$2; shift 2
		[[ $text == *"$from"* ]] || { echo "$src does not contain $from"; return 1; }
		text=${text//"$from"/"$to"}
	done
	printf '%s\n' "$text" >"$dst"
}
# report: turn manifests.py's lines (ok/fail TAB name TAB detail) into TAP
report() {
	local st name detail
	while IFS=$'\t' read -r st name detail; do
		case $st in
		ok) ok "$name" ;;
		fail) fail "$name" "$detail" ;;
		*) fail "manifests.py printed: $st $name $detail" ;;
		esac
	done
}
pycheck() {
	local py=$1 rc; shift
	"$py" "$HERE/manifests.py" "$@" >"$TMP/py.out" 2>"$TMP/py.err"; rc=$?
	report <"$TMP/py.out"
	[ "$rc" -eq 0 ] || fail "manifests.py $1 ran" "$(tail -5 "$TMP/py.err")"
}
# log_has NAME TEXT: the spawned NAME's log contains TEXT
log_has() { grep -sqF -- "$2" "$TMP/$1.log"; }
# wait_log NAME PID TEXT: up to 15 s for TEXT in NAME's log while PID lives
wait_log() {
	local i
	for ((i = 0; i < 300; i++)); do
		log_has "$1" "$3" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
# http_ok URL [curl args]: a 2xx/3xx answer, as a Kubernetes httpGet probe counts success
http_ok() {
	local url=$1 code; shift
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" "$url") || return 1
	[ "$code" -ge 200 ] && [ "$code" -lt 400 ]
}
tcp_ok() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# ini_get FILE SECTION KEY: an uncommented value
ini_get() {
	awk -v s="[$2]" -v k="$3" '/^\[/ { sec = $1 } sec == s && $1 == k && $2 == "=" { print $3; exit }' "$1"
}

PY=python3
YPY=""
for p in python3 /usr/bin/python3; do
	if "$p" -c 'import yaml' 2>/dev/null; then YPY=$p; break; fi
done
[ -n "$YPY" ] && PY=$YPY
NO_YAML="python3-yaml not installed (deploy/deps.sh test installs it)"

check "deploy/certs.sh makes development certificates" "$D/certs.sh" "$TMP/certs"
"$PRIM" --help >"$TMP/primary.help" 2>&1
"$GW" --help >"$TMP/gateway.help" 2>&1
mkdir -p "$TMP/bin"
ln -s "$PRIM" "$TMP/bin/geokv-primary"
ln -s "$GW" "$TMP/bin/geokv-gateway"
ln -s "$CLI" "$TMP/bin/geokv"

# --- deploy/deps.sh ----------------------------------------------------------------------------
check "deploy/deps.sh parses (bash -n)" bash -n "$D/deps.sh"
missing=""
for p in nginx haproxy systemd python3-yaml prometheus; do
	sed -n '/mode" = test/,/^fi/p' "$D/deps.sh" | grep -qw -- "$p" || missing+=" $p"
done
check "deploy/deps.sh test installs the checking tools (nginx haproxy systemd python3-yaml prometheus)${missing:+, missing$missing}" test -z "$missing"

# --- nginx -------------------------------------------------------------------------------------
if NGINX=$(tool nginx); then
	mkdir -p "$TMP/nginx/logs"
	if why=$(copy_with "$D/gtm/nginx.conf" "$TMP/nginx/nginx.conf" \
		/etc/nginx/tls/kv.example.com.crt "$TMP/certs/server.crt" \
		/etc/nginx/tls/kv.example.com.key "$TMP/certs/server.key" \
		/etc/geokv/ca.crt "$TMP/certs/ca.crt" \
		/var/log/nginx/ "$TMP/nginx/logs/" \
		"listen 443 ssl;" "listen 127.0.0.1:$(free_port) ssl;"); then
		ok "nginx.conf names its certificate, key and upstream CA files"
		expect_rc "nginx -t accepts deploy/gtm/nginx.conf (dev certificates in a temp copy)" 0 \
			"test is successful" "$NGINX" -t -p "$TMP/nginx/" -e "$TMP/nginx/logs/error.log" \
			-g "pid $TMP/nginx/nginx.pid;" -c "$TMP/nginx/nginx.conf"
	else
		fail "nginx.conf names its certificate, key and upstream CA files" "$why"
	fi
else
	skip "nginx -t accepts deploy/gtm/nginx.conf" "nginx not installed (deploy/deps.sh test installs it)"
fi

# --- haproxy -----------------------------------------------------------------------------------
if HAPROXY=$(tool haproxy); then
	mkdir -p "$TMP/haproxy"
	cat "$TMP/certs/server.crt" "$TMP/certs/server.key" >"$TMP/haproxy/kv.pem"
	if why=$(copy_with "$D/gtm/haproxy.cfg" "$TMP/haproxy/haproxy.cfg" \
		/etc/haproxy/certs/kv.example.com.pem "$TMP/haproxy/kv.pem" \
		/etc/geokv/ca.crt "$TMP/certs/ca.crt"); then
		run "$HAPROXY" -c -f "$TMP/haproxy/haproxy.cfg"
		if [ "$RC" -eq 0 ] && ! grep -qE 'WARNING|ALERT' <<<"$OUT"; then
			ok "haproxy -c accepts deploy/gtm/haproxy.cfg without warnings (dev certificates in a temp copy)"
		else
			fail "haproxy -c accepts deploy/gtm/haproxy.cfg without warnings" "rc=$RC" "${OUT:0:600}"
		fi
	else
		fail "haproxy.cfg names its certificate and CA files" "$why"
	fi
else
	skip "haproxy -c accepts deploy/gtm/haproxy.cfg" "haproxy not installed (deploy/deps.sh test installs it)"
fi

# --- systemd units -----------------------------------------------------------------------------
SYSUSERS=$D/systemd/geokv.sysusers.conf
sysuser=$(awk '$1 == "u" { print $2; exit }' "$SYSUSERS" 2>/dev/null)
check "deploy/systemd/geokv.sysusers.conf creates a user (${sysuser:-none})" test -n "$sysuser"
SA=$(tool systemd-analyze) || SA=""
mkdir -p "$TMP/units"
declare -A unit_for=()
for unit in "$D"/systemd/*.service; do
	name=$(basename "$unit")
	exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
	daemon=$(basename "$exe")
	case $daemon in
	geokv-primary) real=$PRIM ;;
	geokv-gateway) real=$GW ;;
	geokv-leaf) real=$BUILD/leaf/geokv-leaf ;;
	*) real="" ;;
	esac
	if [ -z "$real" ] || [ ! -x "$real" ]; then
		fail "$name: ExecStart runs a built geokv daemon" "ExecStart=$exe"
		continue
	fi
	unit_for[$daemon]=$name
	if [ -n "$SA" ]; then
		copy_with "$unit" "$TMP/units/$name" "ExecStart=$exe" "ExecStart=$real" >/dev/null
		run "$SA" verify "$TMP/units/$name"
		if [ "$RC" -eq 0 ] && [ -z "$OUT" ]; then
			ok "systemd-analyze verify $name, silent (temp copy with ExecStart=$real)"
		else
			fail "systemd-analyze verify $name, silent" "rc=$RC" "${OUT:0:600}"
		fi
	else
		skip "systemd-analyze verify $name" "systemd-analyze not installed (deploy/deps.sh test installs systemd)"
	fi
	check "$name: has Documentation=" grep -q '^Documentation=.' "$unit"
	check "$name: User= is the sysusers user $sysuser" grep -qx "User=$sysuser" "$unit"
	ini=$(sed -n 's/^ExecStart=.* -c \/etc\/geokv\/\([^ ]*\).*/\1/p' "$unit")
	if [ -n "$ini" ] && [ -f "$D/$ini" ]; then
		ok "$name: -c /etc/geokv/$ini is an example config in deploy/"
		data=$(ini_get "$D/$ini" "${daemon#geokv-}" data)
		covered=0
		for p in $(sed -n 's/^ReadWritePaths=//p' "$unit"); do
			p=${p#-}
			[ "$data" = "$p" ] || [[ $data == "$p"/* ]] && covered=1
		done
		check "$name: ReadWritePaths covers the store path of deploy/$ini ($data)" test "$covered" = 1
	else
		fail "$name: ExecStart names an example config (-c /etc/geokv/FILE)" "ExecStart line: $(grep ^ExecStart= "$unit")"
	fi
done
for daemon in geokv-primary geokv-gateway geokv-leaf; do
	[ "$daemon" = geokv-leaf ] && [ ! -x "$BUILD/leaf/geokv-leaf" ] && continue
	check "one systemd unit for $daemon (${unit_for[$daemon]:-none})" test -n "${unit_for[$daemon]:-}"
done
pdata=$(ini_get "$D/primary.ini" primary data)
gdata=$(ini_get "$D/gateway.ini" gateway data)
check "gateway.ini data ($gdata) is the state/ of primary.ini data ($pdata)" test "$gdata" = "$pdata/state"
check "geokv-primary.service keeps its state in primary.ini's data dir" \
	grep -qx "StateDirectory=${pdata#/var/lib/}" "$D/systemd/geokv-primary.service"

if SU=$(tool systemd-sysusers); then
	run "$SU" --dry-run "$SYSUSERS"
	if [ "$RC" -eq 0 ] && ! grep -qiE 'fail|unknown|ignoring|invalid' <<<"$OUT"; then
		ok "systemd-sysusers --dry-run accepts geokv.sysusers.conf"
	else
		fail "systemd-sysusers --dry-run accepts geokv.sysusers.conf" "rc=$RC" "${OUT:0:400}"
	fi
	mkdir -p "$TMP/sysroot/etc"
	run "$SU" --root="$TMP/sysroot" "$SYSUSERS"
	check "systemd-sysusers creates $sysuser (home /var/lib/geokv) in an empty root" \
		grep -q "^$sysuser:x:[0-9]*:[0-9]*:[^:]*:/var/lib/geokv:" "$TMP/sysroot/etc/passwd"
else
	skip "systemd-sysusers accepts geokv.sysusers.conf" "systemd-sysusers not installed (deploy/deps.sh test installs systemd)"
fi

# --- example configs: every value is the default it claims, and the daemon accepts the file ---
pycheck "$PY" ini geokv-primary "$TMP/primary.help" "$D/primary.ini"
pycheck "$PY" ini geokv-gateway "$TMP/gateway.help" "$D/gateway.ini"

PP=$(free_port) PM=$(free_port)
spawn ini-primary "$PRIM" -c "$D/primary.ini" --data "$TMP/ini/primary" \
	--listen "127.0.0.1:$PP" --metrics-listen "127.0.0.1:$PM"
P_PID=$SPAWNED
if wait_log ini-primary "$P_PID" "INFO primary serving"; then
	ok "geokv-primary -c deploy/primary.ini (data, listen, metrics overridden) reaches serving"
else
	fail "geokv-primary -c deploy/primary.ini reaches serving" "$(tail -5 "$TMP/ini-primary.log")"
fi
GP=$(free_port) GM=$(free_port)
spawn ini-gateway "$GW" -c "$D/gateway.ini" --data "$TMP/ini/primary/state" \
	--listen "127.0.0.1:$GP" --metrics-listen "127.0.0.1:$GM" \
	--cert "$TMP/certs/server.crt" --key "$TMP/certs/server.key"
G_PID=$SPAWNED
if wait_log ini-gateway "$G_PID" "INFO gateway listening"; then
	ok "geokv-gateway -c deploy/gateway.ini (data, listen, certs, metrics overridden) starts listening"
else
	fail "geokv-gateway -c deploy/gateway.ini starts listening" "$(tail -5 "$TMP/ini-gateway.log")"
fi
check "the gateway from gateway.ini answers /livez over HTTPS" \
	wait_until 5 http_ok "https://127.0.0.1:$GP/livez" --cacert "$TMP/certs/ca.crt"

# --- promtool on both /metrics ----------------------------------------------------------------
curl -s --max-time 5 "http://127.0.0.1:$PM/metrics" >"$TMP/primary.metrics"
curl -s --max-time 5 "http://127.0.0.1:$GM/metrics" >"$TMP/gateway.metrics"
check "the primary's --metrics-listen serves GET /metrics" grep -q '^geokv_primary_' "$TMP/primary.metrics"
check "the gateway's --metrics-listen serves GET /metrics" grep -q '^geokv_gateway_' "$TMP/gateway.metrics"
if PROMTOOL=$(tool promtool); then
	for m in primary gateway; do
		if out=$("$PROMTOOL" check metrics <"$TMP/$m.metrics" 2>&1); then
			ok "promtool check metrics: geokv-$m /metrics"
		else
			fail "promtool check metrics: geokv-$m /metrics" "${out:0:600}"
		fi
	done
else
	skip "promtool check metrics on /metrics" "promtool not installed (deploy/deps.sh test installs prometheus)"
fi

# --- the image's entrypoint and healthcheck, against the built daemons --------------------------
EP=$D/container/entrypoint.sh
HC=$D/container/healthcheck.sh
check "entrypoint.sh and healthcheck.sh parse (sh -n)" sh -n "$EP" "$HC"
ep() { env GEOKV_BIN="$TMP/bin" sh "$EP" "$@"; }
expect "image entrypoint: 'primary ARGS' runs geokv-primary" "usage: geokv-primary" ep primary --help
expect "image entrypoint: 'gateway ARGS' runs geokv-gateway" "usage: geokv-gateway" ep gateway --help
expect "image entrypoint: 'geokv ARGS' runs the CLI" "Usage: geokv" ep geokv --help
expect "image entrypoint: flags alone run geokv-primary" "usage: geokv-primary" ep --help
expect "image entrypoint: another command runs as given" "entrypoint-ok" ep echo entrypoint-ok
hc() { env GEOKV_BIN="$TMP/bin" "$@" sh "$HC"; }
check "image healthcheck passes for the running primary (geokv status)" \
	hc GEOKV_HEALTH_PROG=geokv-primary GEOKV_HEALTH_ADDR="127.0.0.1:$PP"
check "image healthcheck passes for the running gateway (/livez)" \
	hc GEOKV_HEALTH_PROG=geokv-gateway GEOKV_HEALTH_URL="https://127.0.0.1:$GP/livez"

stop "$G_PID"
check "the gateway exits 0 on SIGTERM" test "$RC" = 0
stop "$P_PID"
check "the primary exits 0 on SIGTERM" test "$RC" = 0
check "image healthcheck fails once the primary is gone" \
	test "$(hc GEOKV_HEALTH_PROG=geokv-primary GEOKV_HEALTH_ADDR="127.0.0.1:$PP" >/dev/null 2>&1; echo $?)" != 0
check "image healthcheck fails once the gateway is gone" \
	test "$(hc GEOKV_HEALTH_PROG=geokv-gateway GEOKV_HEALTH_URL="https://127.0.0.1:$GP/livez" >/dev/null 2>&1; echo $?)" != 0

# The image's default command (ENTRYPOINT + CMD), with its paths under $TMP and its port free.
cmdjson=$(sed -n 's/^CMD //p' "$D/container/Dockerfile" | tail -1)
IP=$(free_port)
mapfile -d '' imgcmd < <("$PY" -c '
import json, sys
for a in json.loads(sys.argv[1]):
    print(a.replace("/var/lib/geokv", sys.argv[2]).replace("0.0.0.0:7400", "127.0.0.1:" + sys.argv[3]), end="\0")
' "$cmdjson" "$TMP/image/var/lib/geokv" "$IP")
mkdir -p "$TMP/image/var/lib/geokv"
spawn image env GEOKV_BIN="$TMP/bin" sh "$EP" "${imgcmd[@]}"
I_PID=$SPAWNED
if wait_log image "$I_PID" "INFO primary serving"; then
	ok "the image's default command (CMD ${cmdjson}) starts a primary"
else
	fail "the image's default command starts a primary" "CMD $cmdjson" "$(tail -3 "$TMP/image.log")"
fi
stop "$I_PID"

# --- Dockerfile (static: no container engine or registry here) ----------------------------------
need=()
if command -v dpkg >/dev/null; then
	# The libraries the binaries name (DT_NEEDED; apt brings what those depend on), minus
	# the sanitizer runtimes an ASan build links, resolved to files through ldd.
	direct=$(for b in "$PRIM" "$GW" "$CLI"; do LC_ALL=C readelf -d "$b" 2>/dev/null; done |
		sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -v '^lib[a-z]*san\.' | sort -u)
	for lib in $(ldd "$PRIM" "$GW" "$CLI" 2>/dev/null |
		awk -v names="$(echo $direct)" 'BEGIN { n = split(names, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
			$2 == "=>" && $3 ~ /^\// && ($1 in want) { print $3 }' | sort -u); do
		pkg=""
		for cand in "$lib" "$(realpath "$lib")" "/usr$lib" "${lib#/usr}"; do
			pkg=$(dpkg -S "$cand" 2>/dev/null | grep -v '^diversion' | head -1 | cut -d: -f1)
			[ -n "$pkg" ] && break
		done
		case $pkg in "" | libc6) ;; *) need+=(--need "$pkg") ;; esac
	done
fi
k8sargs=()
if [ -n "$YPY" ]; then
	for f in "$D"/k8s/*.yaml "$D/gtm/kubernetes-probes.yaml"; do k8sargs+=(--k8s "$f"); done
else
	skip "Dockerfile: every containerPort of the Kubernetes manifests is EXPOSEd" "$NO_YAML"
fi
pycheck "$PY" dockerfile "$D/container/Dockerfile" "$ROOT" \
	--help "$TMP/primary.help" --help "$TMP/gateway.help" --ini "$D/primary.ini" --ini "$D/gateway.ini" \
	"${k8sargs[@]}" "${need[@]}"
# The build stage installs with meson into /usr/local; the image copies /usr/local/bin/ and the
# entrypoint runs geokv-primary, geokv-gateway and geokv from there.
if command -v meson >/dev/null; then
	inst=$(meson introspect "$BUILD" --installed 2>/dev/null)
	missing=""
	for b in geokv-primary geokv-gateway geokv; do
		grep -q "/bin/$b\"" <<<"$inst" || missing+=" $b"
	done
	check "meson install puts geokv-primary, geokv-gateway and geokv in bin/ (what the image copies)${missing:+, missing$missing}" test -z "$missing"
else
	skip "meson install puts the daemons in bin/" "meson not installed"
fi

# --- Kubernetes manifests -----------------------------------------------------------------------
pycheck "$PY" json "$D"/gtm/*.json
if [ -n "$YPY" ]; then
	pycheck "$YPY" k8s "$D"/k8s/*.yaml "$D/gtm/kubernetes-probes.yaml"
else
	skip "Kubernetes manifests parse and hold together" "$NO_YAML"
fi

# The StatefulSet's pod geokv-1, run on loopback: each container's own command and args
# (binaries from the build, the volume and the TLS secret under $TMP, every 0.0.0.0:PORT on a
# free loopback port), then each of its probes as the kubelet would run it.
if [ -n "$YPY" ]; then
	K8S=$D/k8s/geokv.yaml
	POD=$TMP/pod
	mkdir -p "$POD/var/lib/geokv" "$POD/tls"
	cp "$TMP/certs/server.crt" "$POD/tls/tls.crt"
	cp "$TMP/certs/server.key" "$POD/tls/tls.key"
	portargs=()
	for p in $("$YPY" "$HERE/manifests.py" pod-ports "$K8S" | sort -u); do
		portargs+=(--port "$p=$(free_port)")
	done
	"$YPY" "$HERE/manifests.py" pod "$K8S" "$POD" --env metadata.namespace=ci \
		--sub "/usr/local/bin/=$TMP/bin/" --sub "/var/lib/geokv=$POD/var/lib/geokv" \
		--sub "/etc/geokv/tls/=$POD/tls/" "${portargs[@]}" 2>"$TMP/py.err" ||
		fail "manifests.py pod ran" "$(tail -3 "$TMP/py.err")"
	declare -A pod_pid=()
	# Alphabetical: the gateway starts first, before the primary has created its store, as it
	# may in a real pod.
	for f in "$POD"/*.argv; do
		c=$(basename "$f" .argv)
		mapfile -d '' argv <"$f"
		mapfile -d '' envs <"$POD/$c.env"
		spawn "pod-$c" env HOSTNAME=geokv-1 "${envs[@]}" "${argv[@]}"
		pod_pid[$c]=$SPAWNED
	done
	if wait_log pod-primary "${pod_pid[primary]}" "INFO primary serving"; then
		ok "pod geokv-1: the primary container's command starts the primary"
	else
		fail "pod geokv-1: the primary container's command starts the primary" "$(tail -3 "$TMP/pod-primary.log")"
	fi
	check "pod geokv-1: node id 2 (ordinal + 1) in a group of 3" \
		grep -q "INFO primary serving.* node=2 .*members=3" "$TMP/pod-primary.log"
	for o in 0 2; do
		check "pod geokv-1: dials member $((o + 1)) at geokv-$o.geokv-peers.ci.svc.cluster.local:7410" \
			wait_until 10 log_has pod-primary "peer=$((o + 1)) addr=geokv-$o.geokv-peers.ci.svc.cluster.local:7410"
	done
	if wait_log pod-gateway "${pod_pid[gateway]}" "INFO gateway listening"; then
		ok "pod geokv-1: the gateway container waits for the store, then runs the gateway"
	else
		fail "pod geokv-1: the gateway container runs the gateway" "$(tail -3 "$TMP/pod-gateway.log")"
	fi
	for c in "${!pod_pid[@]}"; do
		while read -r kind type port path scheme; do
			name="pod geokv-1 container $c: $kind ($type 127.0.0.1:$port${path#-}) passes"
			case $c/$kind/$path in
			primary/readinessProbe//readyz)
				# A lone member of a group of three has no leader: rightly not ready, and
				# it says why (the group forming is checked with DNS-name peers below).
				name="pod geokv-1 container primary: readinessProbe ($port/readyz) is 503 \"no leader known\" while alone"
				expect "$name" '"reason":"no leader known"' curl -s --max-time 5 "http://127.0.0.1:$port/readyz"
				continue ;;
			esac
			case $type in
			httpGet) check "$name" wait_until 10 http_ok "$scheme://127.0.0.1:$port$path" -k ;;
			tcpSocket) check "$name" wait_until 10 tcp_ok "$port" ;;
			*) fail "$name" "probe type $type not checked" ;;
			esac
		done <"$POD/$c.probes"
	done
	for c in gateway primary; do
		stop "${pod_pid[$c]}"
		check "pod geokv-1: the $c container exits 0 on SIGTERM" test "$RC" = 0
	done
	mapfile -d '' argv <"$POD/primary.argv"
	mapfile -d '' envs <"$POD/primary.env"
	RUN_TIMEOUT=10 expect_rc "the primary container refuses a hostname without an ordinal" 2 "no StatefulSet ordinal" \
		env HOSTNAME=geokv "${envs[@]}" "${argv[@]}"
else
	skip "the StatefulSet's pod runs on loopback and passes its probes" "$NO_YAML"
fi

# --- DNS names in --peers: three members on loopback named localhost form a group ---------------
peers="" ; declare -a cport=() pport=()
for n in 1 2 3; do
	cport[n]=$(free_port) pport[n]=$(free_port)
	peers+="${peers:+,}$n=localhost:${pport[n]}"
done
declare -a gpid=()
for n in 1 2 3; do
	spawn "group$n" "$PRIM" --data "$TMP/group/$n" --listen "127.0.0.1:${cport[n]}" --node-id "$n" \
		--peers "$peers" --peer-listen "127.0.0.1:${pport[n]}" --cluster-id deploy
	gpid[n]=$SPAWNED
done
check "three members with --peers ID=localhost:PORT commit a write" \
	wait_until 20 "$CLI" -s "127.0.0.1:${cport[1]}" --timeout 2s bucket add deploycheck
# group_ok PORT: that member's status lists three members, one of them the leader
group_ok() {
	local out
	out=$("$CLI" -s "127.0.0.1:$1" --timeout 2s status 2>&1) || return 1
	[ "$(awk '/^members:/ { t = 1; next } t && $1 ~ /^[0-9]+$/' <<<"$out" | wc -l)" = 3 ] &&
		[ "$(awk '/^members:/ { t = 1; next } t && $3 == "leader"' <<<"$out" | wc -l)" = 1 ]
}
for n in 1 2 3; do
	check "member $n's status lists three members and one leader" wait_until 10 group_ok "${cport[n]}"
done
for n in 1 2 3; do
	stop "${gpid[n]}"
	check "group member $n exits 0 on SIGTERM" test "$RC" = 0
done

tap_end
