// The capabilities the DaemonSet grants the agent (deploy/daemonset.yaml), and a command prefix
// that runs a process as root with only those: the Kubernetes end-to-end test runs its agent so.
import { readFileSync } from 'node:fs';
import { loadAll } from 'js-yaml';
import type { Proc } from '../../src/topology/proc.js';

/** What the agent needs, and why, is in deploy/daemonset.yaml's header. */
export const DAEMONSET_CAPABILITIES = ['BPF', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE'];

/** The capabilities deploy/daemonset.yaml adds to the agent's container. */
export function daemonsetCapabilities(): string[] {
  const docs = loadAll(readFileSync('deploy/daemonset.yaml', 'utf8')) as Array<{ kind: string; spec: { template: { spec: { containers: Array<{ securityContext: { capabilities: { add: string[] } } }> } } } }>;
  return docs.find((d) => d.kind === 'DaemonSet')!.spec.template.spec.containers[0].securityContext.capabilities.add;
}

/** `setpriv` arguments: root, but a bounding set of only `caps` (and nothing inheritable). */
export function onlyCapabilities(caps: string[]): string[] {
  return ['--inh-caps=-all', `--bounding-set=-all,${caps.map((c) => `+${c.toLowerCase()}`).join(',')}`, '--'];
}

/**
 * A command line that runs `argv` the way the DaemonSet runs the agent's container: its own mount,
 * pid and cgroup namespaces (no hostPID: the host's processes are not its /proc), the host's /proc
 * read-only at `hostProc` (a directory the caller made), the cgroup2 hierarchy read-only, and root
 * with only the DaemonSet's capabilities. The returned process (unshare) waits for the agent,
 * pid 1 of its namespace: stop it with stopInNamespace().
 */
export function daemonsetLike(hostProc: string, cgroup2: string, argv: string[], opts: { noBpffs?: boolean } = {}): [string, string[]] {
  const script = [
    'set -e',
    'mount --make-rprivate /',
    // A node without bpffs: /sys/fs/bpf is a plain directory in the container.
    ...(opts.noBpffs ? ['mount -t tmpfs none /sys/fs/bpf'] : []),
    'mount --rbind /proc "$1" && mount -o remount,bind,ro "$1"',
    'mount -t proc proc /proc',
    'mount -o remount,bind,ro "$2"',
    'shift 2',
    'exec setpriv "$@"',
  ].join('\n');
  return ['unshare', ['--mount', '--pid', '--cgroup', '--fork', '--', 'sh', '-c', script, 'sh', hostProc, cgroup2,
    ...onlyCapabilities(daemonsetCapabilities()), ...argv]];
}

/** SIGTERM to the process `unshare --fork` runs (the agent), then waits for both to end. */
export async function stopInNamespace(p: Proc, graceMs = 10_000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  let child: number | undefined;
  try {
    child = Number(readFileSync(`/proc/${p.pid}/task/${p.pid}/children`, 'utf8').trim().split(' ')[0]) || undefined;
  } catch { /* unshare already gone */ }
  if (child) process.kill(child, 'SIGTERM');
  const timer = setTimeout(() => { if (child) process.kill(child, 'SIGKILL'); }, graceMs);
  await p.exited;
  clearTimeout(timer);
}
