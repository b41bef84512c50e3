// One capture mode's instance: what `sockmesh up`, the node agent and the agent bench drive, the
// same way in either mode. An instance is opened (made, or adopted from what the kernel holds),
// applies desired states, and is closed; its first apply is all or nothing (it attaches, and a
// failure puts things back), a later one keeps what applied and reports what did not.
//
// Two implementations: EbpfInstance (ebpf.ts: pinned programs and maps on a cgroup) and
// IptablesInstance (iptables.ts: istio-iptables rules in one namespace, or in each pod's).
import type { MeshConfig } from '../config/model.js';
import type { InstanceMaps } from '../bpf/maps.js';
import type { Caller } from '../control/peer.js';
import type { ServiceIds } from '../plan/desired.js';
import type { InboundSync } from './ebpf-inbound.js';
import type { PodProblem } from './pods.js';
import type { InstanceRecord, Mode } from './record.js';

/** What /metrics reads of the kernel at scrape time. */
export interface KernelView {
  /** The open maps, or undefined (iptables mode; before the data path is up). */
  maps(): InstanceMaps | undefined;
  /** Pod names by pod id and service names by service id, as last applied. */
  names(): { pods: Map<number, string>; services: Map<number, string> };
  /** Entries written into each config-driven map of the active slot, as last applied. */
  entries(): Record<string, number> | undefined;
}

export interface ApplyReport {
  /** What changed, by map (eBPF) or rule sets (iptables); empty when nothing did. */
  changes: Record<string, unknown>;
  /** eBPF mode: the slot the programs read now. */
  slot?: number;
  /** The listed pods not meshed by this apply, and why. */
  problems: PodProblem[];
  /** How many pods are meshed now. */
  meshed: number;
  /** The first apply: what it attached (programs, and sk_lookup per pod). */
  attached: string[];
  /** terminateOnRemove: connections closed because their endpoint left a kernel-mode service. */
  terminated: number;
  /** eBPF mode: inbound capture's per-pod changes. */
  inbound?: Omit<InboundSync, 'failed'>;
  /** A later apply: the parts that failed (the rest applied; the next apply tries them again). */
  failures: Array<{ pod: string; what: 'inbound' | 'terminateOnRemove'; error: Error }>;
  /** Things the user should know (a nat table kept for the connections it translated). */
  notes: string[];
  /** Milliseconds spent finding pods and writing the kernel's state. */
  timings: { resolvePodsMs: number; writeMs: number };
}

export interface CaptureInstance {
  readonly mode: Mode;
  /** Brings the kernel to this desired state (see the file's head for the first apply's rule). */
  apply(config: MeshConfig): Promise<ApplyReport>;
  /** Looks for the listed pods that were missing: true when what would be meshed changed (apply
   * then; a missing pod's cgroup or namespace appeared). */
  lookAgain(config: MeshConfig): Promise<boolean>;
  /** The listed pods not meshed by the last apply. */
  problems(): PodProblem[];
  /** The meshed pod a control-socket caller belongs to, as last applied. */
  meshedPodOf(caller: Caller): { name: string; podId: number } | undefined;
  /** The meshed pods and their own addresses, as last applied (what the mesh's policies select). */
  meshedPods(): Array<{ name: string; addresses: string[] }>;
  /** The mode's part of the instance record, as last applied. */
  recordFields(): Partial<InstanceRecord> & { mode: Mode; serviceIds: ServiceIds };
  /** The kernel's counters and names for /metrics (iptables mode: no maps). */
  readonly kernel: KernelView;
  /** From now on an apply writes only what it changes; the step returned brings the slot the
   * programs do not read up to the applied state (run it off the path to ready). */
  followIncrementally(): () => void;
  /** eBPF mode: brings the slot the programs left up to the applied state; true when it wrote. */
  catchUp(): boolean;
  /** Puts back what a failed first apply changed (a fresh instance is removed again). */
  rollback(): Promise<void>;
  /** Lets go of open descriptors; the kernel's state stays. */
  close(): void;
}

/** An apply report with nothing in it, to fill. */
export function emptyReport(): ApplyReport {
  return { changes: {}, problems: [], meshed: 0, attached: [], terminated: 0, failures: [], notes: [], timings: { resolvePodsMs: 0, writeMs: 0 } };
}
