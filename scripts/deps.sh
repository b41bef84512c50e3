#!/usr/bin/env bash
# Installs everything sockmesh needs on Debian (as root) and builds it: Debian packages from
# scripts/debian-packages.txt (with --test also scripts/debian-packages-test.txt), npm
# dependencies (npm ci), the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "deps: run as root (apt-get and BPF need it)" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "deps: sockmesh needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

lists=scripts/debian-packages.txt
[ "${1:-}" = --test ] && lists="$lists scripts/debian-packages-test.txt"
# shellcheck disable=SC2086
packages=$(cat $lists | grep -v '^\s*#' | xargs)
echo "» apt-get install $packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $packages >/dev/null
echo "» npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "» npm run build"
npm run --silent build
