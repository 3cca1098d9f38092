#!/usr/bin/env bash
# Install the Debian packages geokv needs, only those missing. Never prompts; safe as root on
# a fresh Debian 12 with no stdin (CI=true). Usage: deploy/deps.sh [build|test]
#   build  what building and running a local cluster needs (default)
#   test   also what the test suite needs (fuzzing clang, curl/openssl clients, promtool) and
#          the tools that check the files in deploy/ (tests/deploy/check.sh): nginx (nginx -t),
#          haproxy (haproxy -c), systemd (systemd-analyze verify, systemd-sysusers), and
#          python3-yaml (the Kubernetes manifests)
set -euo pipefail

mode=${1:-build}
pkgs=(build-essential pkg-config meson ninja-build libuv1-dev libmbedtls-dev liblmdb-dev
      lmdb-utils node-llhttp libinih-dev libjansson-dev libxxhash-dev libzstd-dev zlib1g-dev
      libcriterion-dev openssl curl python3)
if [ "$mode" = test ]; then
	pkgs+=(clang libclang-rt-14-dev llvm prometheus jq zsh groff-base
	       nginx haproxy systemd python3-yaml)
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

# nginx, haproxy and prometheus are installed for their checkers only: their packages would
# start the services (nginx on port 80, prometheus on 9090). A policy-rc.d that says 101
# ("action forbidden") stops invoke-rc.d and deb-systemd-invoke from starting anything
# during this install; it is put in place only when none exists, and removed afterwards.
policy=/usr/sbin/policy-rc.d
if [ "$mode" = test ] && [ ! -e "$policy" ]; then
	trap '$sudo rm -f "$policy"' EXIT
	printf '#!/bin/sh\n# deploy/deps.sh: no service starts while it installs packages\nexit 101\n' |
		$sudo tee "$policy" >/dev/null
	$sudo chmod 755 "$policy"
fi

$sudo apt-get update -qq </dev/null
$sudo apt-get install -y -qq --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	"${missing[@]}" </dev/null >/dev/null
