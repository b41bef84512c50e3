// Giving memory back after bursts of work. A long-lived process that parsed and applied a large
// config holds the garbage of that work as committed heap until V8's idle memory reducer runs,
// tens of seconds later, and glibc keeps freed malloc pages. The agent calls release() once a
// burst is over: a full, compacting collection, then malloc_trim.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mallocTrim } from '../../native/process.js';

type GcFn = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' }) => void;

let gcFn: GcFn | undefined;

/** V8's gc(), exposed for this process (the usual way: the flag, then a fresh context). */
function gc(): GcFn {
  if (!gcFn) {
    if (typeof globalThis.gc === 'function') {
      gcFn = globalThis.gc as unknown as GcFn;
    } else {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as GcFn;
    }
  }
  return gcFn;
}

/**
 * A full collection, then glibc's free pages back to the kernel. The collection is V8's
 * asynchronous kind: it runs from a task of its own, with no JavaScript frames on the stack, so
 * nothing the caller still references keeps garbage alive (measured: a synchronous gc() from a
 * timer left the heap's committed size where it was). Resolves once both are done.
 */
export async function releaseMemory(): Promise<void> {
  // Compacting is what gives pages back: the survivors of a start or an edit are spread thin over
  // the pages its garbage filled (measured with 10,000 services: 43 MiB of heap committed for 18
  // MiB live after a plain full collection, 19 MiB after a compacting one). V8 reads the flag at
  // each full collection; it is set for this one only.
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gc()({ type: 'major', execution: 'async', flavor: 'last-resort' });
    await new Promise((r) => setTimeout(r, 200).unref());
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
  mallocTrim();
}

/**
 * Calls releaseMemory() once no work was reported for `quietMs`: each work() call pushes it back,
 * so a burst of edits costs one collection at its end. The timer never keeps the process alive.
 */
export class MemoryReleaser {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly quietMs: number, private readonly onRelease?: (ms: number) => void) {}

  /** Work happened: release `delayMs` (default: the quiet period) from now, unless more comes. */
  work(delayMs = this.quietMs): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const t0 = performance.now();
      void releaseMemory().then(() => this.onRelease?.(performance.now() - t0));
    }, delayMs);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** Node flags the agent runs with: a young generation of 1 MiB semi-spaces (V8's default grows
 * them to 16 MiB each, memory the agent never gives back; measured with 10,000 services: ~30 MiB
 * of RSS, for 2-5 ms more per reconcile). V8 reads it only when the process starts. */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1'];
/** Set in the agent's environment once it runs with them (or by a user who wants it as is). */
export const AGENT_TUNED_ENV = 'SOCKMESH_AGENT_TUNED';

/**
 * Restarts this process in place (execve: the same pid, so a supervisor or DaemonSet sees one
 * process) with AGENT_NODE_FLAGS and glibc's MALLOC_ARENA_MAX=2 (one arena per thread otherwise:
 * ~4 MiB more), unless it already runs with them. Only the CLI's entry point calls it, before
 * anything else runs. On failure it returns a message and the agent runs untuned.
 */
export async function reexecTuned(): Promise<string | undefined> {
  const env = process.env;
  const given = `${process.execArgv.join(' ')} ${env.NODE_OPTIONS ?? ''}`;
  if (env[AGENT_TUNED_ENV] || AGENT_NODE_FLAGS.every((f) => given.includes(f.split('=')[0]))) return undefined;
  const { execve } = await import('../../native/process.js');
  try {
    execve(process.execPath, [process.execPath, ...process.execArgv, ...AGENT_NODE_FLAGS, ...process.argv.slice(1)],
      { MALLOC_ARENA_MAX: '2', ...env, [AGENT_TUNED_ENV]: '1' });
  } catch (e) {
    return `running without the agent's memory settings (${(e as Error).message})`;
  }
}
