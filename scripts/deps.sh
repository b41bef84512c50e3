#!/usr/bin/env bash
# Installs everything sockmesh needs on Debian (as root) and builds it: Debian packages from
# scripts/debian-packages.txt, npm dependencies (npm ci), the TypeScript build.
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

packages=$(grep -v '^\s*#' scripts/debian-packages.txt | xargs)
echo "» apt-get install $packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $packages >/dev/null
echo "» npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "» npm run build"
npm run --silent build
