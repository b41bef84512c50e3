// Privileged tests: declared with `privileged(...)`, they skip with a stated reason when the
// machine cannot run them. Under CI (CI=true) a missing requirement fails instead: CI runs as
// root on a kernel that has every feature, so a skip there would hide a broken test.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe } from 'vitest';
import { cgroup2Mount } from '../../src/bpf/cgroup.js';

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why tests needing these tools cannot run here (the first missing one), or undefined. */
export function missingTools(tools: string[]): string | undefined {
  const missing = tools.filter((t) => !have(t));
  return missing.length ? `needs ${missing.join(', ')} on PATH` : undefined;
}

/** Why privileged tests cannot run here, or undefined when they can. */
export function privilegedSkipReason(tools: string[] = ['bpftool', 'ip']): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)';
  if (!cgroup2Mount()) return 'needs a cgroup2 mount';
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'needs kernel BTF';
  return missingTools(tools);
}

export function requirementsOrSkip(reason: string | undefined): boolean {
  if (reason && process.env.CI) throw new Error(`CI must run privileged tests, but: ${reason}`);
  return reason !== undefined;
}

/** describe() for tests that need root and kernel features. */
export function privileged(name: string, fn: () => void, tools?: string[]): void {
  const reason = privilegedSkipReason(tools);
  describe.skipIf(requirementsOrSkip(reason))(reason ? `${name} [skipped: ${reason}]` : name, fn);
}

let counter = 0;

/** A name unique to this test run and process, for instances, cgroups and namespaces. */
export function uniqueName(tag: string): string {
  counter += 1;
  return `t${process.pid}${tag}${counter}`;
}
