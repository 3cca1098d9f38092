#!/usr/bin/env bash
# Install the Debian packages geokv needs, only those missing. Never prompts; safe as root on
# a fresh Debian 12 with no stdin (CI=true). Usage: deploy/deps.sh [build|test]
#   build  what building and running a local cluster needs (default)
#   test   also what the test suite needs (fuzzing clang, curl/openssl clients, promtool)
set -euo pipefail

mode=${1:-build}
pkgs=(build-essential pkg-config meson ninja-build libuv1-dev libmbedtls-dev liblmdb-dev
      lmdb-utils node-llhttp libinih-dev libjansson-dev libxxhash-dev libzstd-dev zlib1g-dev
      libcriterion-dev openssl curl python3)
if [ "$mode" = test ]; then
	pkgs+=(clang libclang-rt-14-dev llvm prometheus jq zsh groff-base)
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq </dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
