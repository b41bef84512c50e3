// What the node agent is started with (sockmesh agent's flags).
import type { Mode } from '../instance/record.js';
import type { Logger } from '../util/log.js';

/** Where the agent's desired state comes from, besides the config file. */
export interface KubernetesOptions {
  node: string;
  /** kubeconfig path; undefined: KUBECONFIG, in-cluster, ~/.kube/config (client-node's order). */
  kubeconfig?: string;
  /** The host's /proc (pods' namespaces are found through their processes). */
  procRoot?: string;
  /** How long a restart waits for the first list before adopting the last applied state. */
  firstSyncMs?: number;
}

export interface AgentOptions {
  instance: string;
  /** The config file: services and pods; with `kubernetes`, node-wide settings only (optional). */
  configPath?: string;
  kubernetes?: KubernetesOptions;
  /** cgroup2 directory the programs attach to: the parent of every pod's cgroup. */
  cgroup: string;
  listen: string;
  cleanupOnExit: boolean;
  log: Logger;
  objectPath?: string;
  /** How long to wait for the instance lock at start (another agent or command). */
  lockTimeoutMs?: number;
  /** auto (default): eBPF mode when the kernel can run it (probed by loading), else iptables
   * mode for every pod; ebpf: eBPF or exit naming the missing feature; iptables: rules only. */
  mode?: 'auto' | Mode;
}
