#!/usr/bin/env bash
# proto/tls.c builds from public mbedTLS headers only: compile it again with a
# mbedtls/ssl_internal.h ahead on the include path that stops the compiler. Emits TAP.
#
#   tls_public_api.sh SOURCE_ROOT SHADOW_INCLUDE_DIR CC [CC ARGS...]
set -uo pipefail
src=$1 shadow=$2
shift 2
echo "TAP version 13"
if out=$("$@" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsyntax-only -I"$shadow" -I"$src" \
	"$src/proto/tls.c" 2>&1); then
	echo "ok 1 - proto/tls.c compiles without mbedTLS's private ssl_internal.h"
else
	echo "not ok 1 - proto/tls.c compiles without mbedTLS's private ssl_internal.h"
	echo "$out" | head -n 5 | sed 's/^/# /'
fi
echo "1..1"
