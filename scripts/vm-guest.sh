#!/bin/bash
# Runs inside the test VM as PID 1 (started by /sbin/sockmesh-init from scripts/test-vm): sets up
# the mounts a booted system would have, runs the kernel-dependent tests as root with CI=true (so
# nothing may skip), prints marker lines for the host, and powers off.
set -u
export PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root CI=true
# Software emulation is 3-14x slower than the host: test timeouts scale by this.
export SOCKMESH_TEST_TIME_SCALE=${SOCKMESH_TEST_TIME_SCALE:-6}
# The upgrade test's other builds of the BPF object (the guest has no clang): made by the host.
export SOCKMESH_BPF_VARIANTS=/repo/.cache/bpf-variants
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# /sys/fs/bpf stays unmounted: sockmesh mounts bpffs itself, and the tests see that it does.
ip link set lo up
echo "SOCKMESH-VM-KERNEL $(uname -r)"
cd /repo
tests=$(sed -n 's/.*SOCKMESH_TESTS="\([^"]*\)".*/\1/p' /proc/cmdline)
node node_modules/vitest/vitest.mjs run $tests --reporter=default --reporter=json --outputFile.json=/tmp/vm.json
rc=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync("/tmp/vm.json", "utf8"));
  console.log(`SOCKMESH-VM-RESULT ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || echo "SOCKMESH-VM-RESULT 0 passed, 1 failed, 0 skipped"
echo "SOCKMESH-VM-EXIT $rc"
sync
echo o >/proc/sysrq-trigger
sleep 10
