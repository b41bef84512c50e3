#!/usr/bin/env bash
# Vagrant provisioning: Node.js 20 (Debian 12 ships 18), then the same scripts/deps.sh the README's
# set-up command runs, so the VM has exactly what a native install has.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; then
  apt-get update -qq
  apt-get install -y -qq ca-certificates curl gnupg
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor -o /etc/apt/keyrings/nodesource.gpg
  echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_20.x nodistro main" > /etc/apt/sources.list.d/nodesource.list
  apt-get update -qq
  apt-get install -y -qq nodejs
fi
bash /vagrant/scripts/deps.sh
