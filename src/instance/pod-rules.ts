// The agent's iptables mode (its fallback on kernels that cannot run eBPF mode): one istio-iptables
// rule set per pod, inside the pod's network namespace, from the pod's own sidecar and capture
// settings. Each namespace's rules are replaced in one iptables-restore transaction, and only where
// the pod's part of the config changed; rules of pods that left the config are removed.
import type { MeshConfig, PodConfig } from '../config/model.js';
import { modeIssues } from '../config/validate/index.js';
import { SockmeshError } from '../errors.js';
import { applyRules, drainNote, removeRules, type RemoveNotes } from '../iptables/apply.js';
import type { PodProblem } from './pods.js';

export interface PodRulesReport {
  applied: string[];
  removed: string[];
  problems: PodProblem[];
  /** Things to log (a nat table kept for the connections it translated). */
  notes: string[];
}

/** A pod's config as iptables mode sees it: the node's services, the pod's own settings. */
export function podConfig(cfg: MeshConfig, p: PodConfig): MeshConfig {
  return { ...cfg, sidecar: p.sidecar, capture: p.capture, pods: [] };
}

export class PodRules {
  /** Pod name -> its namespace and what its rules were made from. */
  private readonly applied = new Map<string, { netns: string; key: string }>();

  constructor(private readonly instance: string, previous: Array<{ name: string; netns: string }> = []) {
    // Rules a previous agent applied: kept until this one has applied its own (key unknown).
    for (const p of previous) this.applied.set(p.name, { netns: p.netns, key: '' });
  }

  /** Where rules are now, for the record. */
  list(): Array<{ name: string; netns: string }> {
    return [...this.applied].map(([name, a]) => ({ name, netns: a.netns }));
  }

  async apply(cfg: MeshConfig): Promise<PodRulesReport> {
    const report: PodRulesReport = { applied: [], removed: [], problems: [], notes: [] };
    const services = JSON.stringify(cfg.services);
    const wanted = new Set<string>();
    for (const [i, p] of cfg.pods.entries()) {
      const path = `pods[${i}]`;
      wanted.add(p.name);
      if (!p.netns) {
        report.problems.push({ path, pod: p.name, message: 'iptables mode needs the pod\'s network namespace (netns)' });
        continue;
      }
      const pc = podConfig(cfg, p);
      const issues = modeIssues(pc, 'iptables');
      if (issues.length) {
        report.problems.push({ path, pod: p.name, message: issues.map((x) => `${x.path}: ${x.message}`).join('; ') });
        continue;
      }
      const key = `${p.netns}\n${JSON.stringify([p.sidecar, p.capture, cfg.exclude])}\n${services}`;
      const had = this.applied.get(p.name);
      if (had?.key === key) continue;
      try {
        if (had && had.netns !== p.netns) await removeRules(had.netns, this.instance);
        await applyRules(p.netns, pc, this.instance);
        this.applied.set(p.name, { netns: p.netns, key });
        report.applied.push(p.name);
      } catch (e) {
        if (!(e instanceof SockmeshError)) throw e;
        report.problems.push({ path, pod: p.name, message: e.message });
      }
    }
    for (const [name, a] of [...this.applied]) {
      if (wanted.has(name)) continue;
      try {
        const kept: RemoveNotes = { draining: [] };
        await removeRules(a.netns, this.instance, kept);
        if (kept.draining.length) report.notes.push(drainNote(`pod ${name} (${a.netns})`, kept.draining));
      } catch (e) {
        if (!(e instanceof SockmeshError)) throw e; // its namespace is gone: so are its rules
      }
      this.applied.delete(name);
      report.removed.push(name);
    }
    return report;
  }
}
