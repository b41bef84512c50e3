// Pods that are listed but not meshed yet: the agent watches where each will appear (its cgroup,
// its namespace's directory) and looks for them again when something shows up there; and a pod
// that runs `sockmesh wait` is answered once the kernel holds its state. Asking makes the agent
// look at once: the caller's own presence says its cgroup and namespace exist.
import { dirname } from 'node:path';
import type { MeshConfig } from '../config/model.js';
import type { Caller } from '../control/peer.js';
import type { ControlRequest } from '../control/protocol.js';
import { netnsPath, podCgroup, type PodProblem } from '../instance/pods.js';
import { PathWatcher } from '../util/path-watcher.js';
import type { Cell } from './cell.js';

export interface PodWatchHooks {
  /** The meshed pod of a caller, as last applied. */
  meshedPodOf(caller: Caller): { name: string; podId: number } | undefined;
  /** The listed pods not meshed now, and why. */
  problems(): PodProblem[];
  /** Looks for the missing pods again (and applies when what is found changed). */
  lookForPods(reason: string): void;
}

export class PodWatch implements Cell {
  readonly name = 'pod watch';
  private readonly watcher = new PathWatcher(() => this.hooks.lookForPods('a missing pod\'s cgroup or namespace appeared'));
  /** `sockmesh wait` callers, woken after each apply. */
  private waiters: Array<() => void> = [];
  private stopping = false;

  constructor(private readonly instance: string, private readonly cgroup: string, private readonly kubernetes: boolean, private readonly hooks: PodWatchHooks) {}

  /** Watches where the missing pods of this config will appear. */
  watch(problems: PodProblem[], config: MeshConfig | undefined): void {
    if (this.kubernetes) {
      // The cluster's pods are looked for by the source; this retries what it found and lost.
      this.watcher.watch(problems.length ? [this.cgroup] : []);
      return;
    }
    const missing = new Set(problems.map((p) => p.pod));
    const paths = (config?.pods ?? []).filter((p) => missing.has(p.name)).flatMap((p) => {
      const out: string[] = [];
      try {
        out.push(podCgroup(this.cgroup, p.cgroup));
      } catch { /* outside --cgroup: never found */ }
      if (p.netns !== undefined) out.push(dirname(netnsPath(p.netns)));
      return out;
    });
    this.watcher.watch(paths);
  }

  /** After an apply: the waiting callers look again. */
  applied(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** `sockmesh wait`: answered once the caller's pod is meshed, or when the time is up, with why not. */
  async wait(req: Extract<ControlRequest, { op: 'wait' }>, caller: Caller): Promise<Record<string, unknown>> {
    const deadline = Date.now() + req.timeoutMs;
    let looked = false;
    for (;;) {
      const pod = this.hooks.meshedPodOf(caller);
      if (pod) return { meshed: true, pod: pod.name, podId: pod.podId };
      if (!looked) {
        looked = true;
        this.hooks.lookForPods('a pod asked to be meshed (sockmesh wait)');
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.stopping) return { meshed: false, reason: this.whyNotMeshed(caller) };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 250));
        function done() { clearTimeout(timer); resolve(); }
        this.waiters.push(done);
      });
    }
  }

  private whyNotMeshed(caller: Caller): string {
    const who = `cgroup id ${caller.cgroupId ?? 'unknown'}, network namespace cookie ${caller.netnsCookie ?? 'unknown'}`;
    const problems = this.hooks.problems();
    const pending = problems.length ? `; listed pods not meshed: ${problems.map((p) => `${p.pod} (${p.message})`).join('; ')}` : '';
    return `no meshed pod of instance "${this.instance}" has the caller's cgroup and network namespace (${who})${pending}`;
  }

  stop(): void {
    this.stopping = true;
    this.watcher.stop();
    this.applied();
  }
}
