// iptables mode's instance: the istio-iptables rule set, in one network namespace (`sockmesh up
// --mode iptables`), or in each listed pod's own namespace (the node agent's fallback on kernels
// that cannot run eBPF mode, src/instance/pod-rules.ts). Each namespace's rules are replaced in one
// iptables-restore transaction, so an apply needs no rollback of its own.
import type { MeshConfig } from '../config/model.js';
import type { Caller } from '../control/peer.js';
import { Codes, UserError } from '../errors.js';
import { applyRules, drainNote, removeRules, type RemoveNotes } from '../iptables/apply.js';
import { netnsCookie } from '../../native/netns.js';
import { nameTable } from '../util/names.js';
import { emptyReport, type ApplyReport, type CaptureInstance, type KernelView } from './capture.js';
import { PodRules } from './pod-rules.js';
import { netnsPath, type PodProblem } from './pods.js';
import type { InstanceRecord } from './record.js';
import { currentNetnsId, iptablesNamespace } from './view.js';

export interface IptablesOpenOptions {
  instance: string;
  /** One rule set in this network namespace (undefined: this process's own). */
  netns?: string;
  /** Each listed pod's rules in its own namespace instead. */
  perPod?: boolean;
  prev: InstanceRecord | undefined;
}

type Rules = 'removed' | 'absent' | 'foreign';

const NO_KERNEL_VIEW: KernelView = { maps: () => undefined, names: () => ({ pods: new Map(), services: new Map() }), entries: () => undefined };

export class IptablesInstance implements CaptureInstance {
  readonly mode = 'iptables' as const;
  readonly kernel = NO_KERNEL_VIEW;
  private readonly podRules: PodRules | undefined;
  private podProblems: PodProblem[] = [];
  private config: MeshConfig | undefined;

  private constructor(private readonly o: IptablesOpenOptions, private readonly netnsId: string | undefined) {
    this.podRules = o.perPod ? new PodRules(o.instance, o.prev?.podNetns) : undefined;
  }

  static open(o: IptablesOpenOptions): IptablesInstance {
    if (o.perPod) return new IptablesInstance(o, undefined);
    const { prev } = o;
    let netnsId: string | undefined;
    if (o.netns === undefined) {
      if (prev?.mode === 'ebpf') {
        throw new UserError(Codes.USAGE, `instance "${o.instance}" runs in eBPF mode without a recorded network namespace: name the pod's namespace with --netns to switch it to iptables mode`);
      }
      netnsId = prev ? iptablesNamespace(prev) ?? prev.netnsId ?? currentNetnsId() : currentNetnsId();
    }
    return new IptablesInstance(o, netnsId);
  }

  /**
   * Removes an instance's rules, wherever its record says they are; what the user should know (a
   * nat table kept for the connections it translated, rules of another instance) goes to notes.
   */
  static async remove(rec: InstanceRecord, notes: string[]): Promise<Rules | undefined> {
    let rules: Rules | undefined;
    if (rec.podNetns) {
      for (const p of rec.podNetns) {
        const kept: RemoveNotes = { draining: [] };
        const r = await removeRules(p.netns, rec.instance, kept).catch((e: Error) => {
          notes.push(`pod ${p.name}: ${e.message}`);
          return 'absent' as const;
        });
        if (r === 'foreign') notes.push(`the iptables rules in ${p.netns} belong to another instance and were left alone`);
        if (kept.draining.length) notes.push(drainNote(`pod ${p.name} (${p.netns})`, kept.draining));
        if (r === 'removed' || rules === undefined) rules = r;
      }
      return rules;
    }
    const kept: RemoveNotes = { draining: [] };
    const ns = iptablesNamespace(rec);
    rules = await removeRules(ns, rec.instance, kept);
    if (kept.draining.length) notes.push(drainNote(ns ? `network namespace ${ns}` : 'this network namespace', kept.draining));
    if (rules === 'foreign') notes.push(`the iptables rules in ${rec.netns ?? 'this namespace'} belong to another instance and were left alone`);
    return rules;
  }

  async apply(config: MeshConfig): Promise<ApplyReport> {
    const report = emptyReport();
    const t = performance.now();
    if (this.podRules) {
      const r = await this.podRules.apply(config);
      this.podProblems = r.problems;
      report.problems = r.problems;
      report.notes = r.notes;
      report.meshed = this.podRules.list().length;
      if (r.applied.length || r.removed.length) report.changes = { rules: { applied: r.applied.length, removed: r.removed.length } };
    } else {
      await applyRules(this.o.netns, config, this.o.instance);
    }
    this.config = config;
    report.timings.writeMs = performance.now() - t;
    return report;
  }

  async lookAgain(): Promise<boolean> {
    return this.podProblems.length > 0;
  }

  problems(): PodProblem[] {
    return this.podProblems;
  }

  /** The pods whose rules are applied, with their configured addresses (iptables mode does not
   * look them up in the namespace). */
  meshedPods(): Array<{ name: string; addresses: string[] }> {
    if (!this.podRules) return [];
    const applied = new Set(this.podRules.list().map((p) => p.name));
    return (this.config?.pods ?? []).filter((p) => applied.has(p.name) && !this.podProblems.some((x) => x.pod === p.name))
      .map((p) => ({ name: p.name, addresses: p.addresses ?? [] }));
  }

  /** By the caller's network namespace: a pod whose rules are applied in it. */
  meshedPodOf(caller: Caller): { name: string; podId: number } | undefined {
    if (!this.podRules) return undefined;
    const applied = new Set(this.podRules.list().map((p) => p.name));
    for (const p of this.config?.pods ?? []) {
      if (!applied.has(p.name) || !p.netns || this.podProblems.some((x) => x.pod === p.name)) continue;
      try {
        if (netnsCookie(netnsPath(p.netns)) === caller.netnsCookie) return { name: p.name, podId: 0 };
      } catch { /* gone */ }
    }
    return undefined;
  }

  recordFields() {
    if (this.podRules) return { mode: this.mode, serviceIds: nameTable<number>(), podNetns: this.podRules.list() };
    const { prev } = this.o;
    return { mode: this.mode, netns: this.o.netns, netnsId: this.netnsId, cgroup: prev?.cgroup, serviceIds: prev?.serviceIds ?? nameTable<number>() };
  }

  followIncrementally(): () => void {
    return () => undefined; // every apply writes only the namespaces whose rules changed
  }

  catchUp(): boolean {
    return false;
  }

  async rollback(): Promise<void> {
    // Each namespace's rules were replaced in one transaction: a failed apply changed none.
  }

  close(): void {}
}
