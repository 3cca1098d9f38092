#!/bin/sh
# HEALTHCHECK of the geokv image: checks whichever daemon the container runs (found in /proc,
# or GEOKV_HEALTH_PROG), through the interface its users use:
#   geokv-primary  `geokv status` on GEOKV_HEALTH_ADDR (default 127.0.0.1:7400): HELLO and
#                  STATUS answered by the event loop. GEOKV_TLS_CA / GEOKV_TOKEN as for the CLI
#                  when the listener has TLS or tokens.
#   geokv-gateway  GET GEOKV_HEALTH_URL (default https://127.0.0.1:8443/livez; the certificate
#                  is not verified: this is the process checking itself). /livez, not /healthz:
#                  a stale feed is the GTM's business, not a reason to restart.
# Exit 0 healthy, 1 not. GEOKV_BIN as in entrypoint.sh.
bin=${GEOKV_BIN:-/usr/local/bin}
prog=${GEOKV_HEALTH_PROG:-}
if [ -z "$prog" ]; then
	for f in /proc/[0-9]*/comm; do
		read -r c <"$f" 2>/dev/null || continue
		case $c in geokv-primary | geokv-gateway | geokv-leaf) prog=$c; break ;; esac
	done
fi
case $prog in
geokv-primary)
	exec "$bin/geokv" -s "${GEOKV_HEALTH_ADDR:-127.0.0.1:7400}" --timeout 2s status >/dev/null ;;
geokv-gateway)
	exec curl -fsS -k -o /dev/null --max-time 2 "${GEOKV_HEALTH_URL:-https://127.0.0.1:8443/livez}" ;;
*)
	echo "healthcheck: no geokv daemon running${prog:+ (GEOKV_HEALTH_PROG=$prog unknown)}" >&2
	exit 1 ;;
esac
