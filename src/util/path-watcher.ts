// Waiting for paths to appear or change: the agent knows a pod from its config (or the cluster)
// before its cgroup and namespace exist, and the pod's app may connect the moment they do. This
// watches where they will appear (the directories above a missing cgroup, /var/run/netns, a pod
// cgroup, whose cgroup.events changes when its first process joins) and calls back at once, with
// a timer behind it in case an event is missed; given no paths, it stops.
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

/** When looks follow an event (ms after it). */
const BURST_MS = [20, 60, 150, 300];

export class PathWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  private timer: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private burst: NodeJS.Timeout | undefined;
  private stopped = false;

  /** `look` is called (debounced) after any event and every `retryMs` while watching. */
  constructor(private readonly look: () => void, private readonly opts: { debounceMs?: number; retryMs?: number } = {}) {}

  /** Watches these paths from now on (each a directory or file that exists, else its nearest existing ancestor); [] stops. */
  watch(paths: Iterable<string>): void {
    if (this.stopped) return;
    const want = new Set<string>();
    for (const p of paths) {
      let at = p;
      while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
      want.add(at);
    }
    for (const [p, w] of this.watchers) {
      if (want.has(p)) continue;
      w.close();
      this.watchers.delete(p);
    }
    for (const p of want) {
      if (this.watchers.has(p)) continue;
      try {
        const w = watch(p, { persistent: false }, () => this.soon());
        w.on('error', () => { w.close(); this.watchers.delete(p); });
        this.watchers.set(p, w);
      } catch { /* gone meanwhile, or not watchable: the timer looks */ }
    }
    clearInterval(this.retry);
    this.retry = undefined;
    if (want.size) {
      this.retry = setInterval(() => this.soon(false), this.opts.retryMs ?? 1000);
      this.retry.unref();
    }
  }

  /** After an event: look now, and a few times more over the next 300 ms (`ip netns add` creates
   * the file first and mounts the namespace on it a moment later, which no event reports). */
  private soon(burst = true): void {
    if (this.stopped) return;
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (!this.stopped) this.look();
      }, this.opts.debounceMs ?? 2);
    }
    if (!burst) return;
    clearTimeout(this.burst);
    let i = 0;
    const again = () => {
      if (this.stopped) return;
      this.look();
      if (++i < BURST_MS.length) this.burst = setTimeout(again, BURST_MS[i] - BURST_MS[i - 1]);
    };
    this.burst = setTimeout(again, BURST_MS[0]);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.burst);
    clearInterval(this.retry);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}
