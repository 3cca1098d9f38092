#!/bin/sh
# Entrypoint of the geokv image: the first argument picks the program, the rest are its
# arguments. Flags only (first argument starting with -) run the primary.
#   docker run geokv primary --data /var/lib/geokv/primary --listen 0.0.0.0:7400
#   docker run geokv gateway -c /etc/geokv/gateway.ini
#   docker run geokv geokv -s primary-0:7400 status        # the CLI
#   docker run geokv sh                                     # anything else runs as given
# Kubernetes may set `command:` to a binary instead, bypassing this script.
# GEOKV_BIN (default /usr/local/bin) is where the binaries are: tests/deploy/check.sh points
# it at a build tree to check the dispatch.
set -eu
bin=${GEOKV_BIN:-/usr/local/bin}
[ $# -gt 0 ] || set -- primary
case $1 in
primary | geokv-primary) shift; exec "$bin/geokv-primary" "$@" ;;
gateway | geokv-gateway) shift; exec "$bin/geokv-gateway" "$@" ;;
geokv | cli) shift; exec "$bin/geokv" "$@" ;;
-*) exec "$bin/geokv-primary" "$@" ;;
*) exec "$@" ;;
esac
