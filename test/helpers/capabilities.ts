// The capabilities the DaemonSet grants the agent (deploy/daemonset.yaml), and a command prefix
// that runs a process as root with only those: the Kubernetes end-to-end test runs its agent so.
import { readFileSync } from 'node:fs';
import { loadAll } from 'js-yaml';

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
