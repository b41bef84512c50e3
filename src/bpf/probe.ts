// Kernel feature probe, by doing: create each map type, load the real object, attach each program
// to a scratch cgroup this probe creates (and removes). `bpftool feature probe` is not trusted.
import { mkdirSync, rmdirSync, existsSync } from 'node:fs';
import * as bpf from '../../native/libbpf.js';
import { NotSupportedError } from '../errors.js';
import { BPFFS, ensureBpffs } from './bpffs.js';
import { cgroup2Mount } from './cgroup.js';
import { attachAll, detach } from './attach.js';
import { loadAndPin } from './load.js';
import { pinLayout, unpin } from './pins.js';
import { MAP_TYPES } from './map.js';
import { defaultObjectPath } from './programs.js';
import { sinceOf } from './requirements.js';

export interface ProbeCheck {
  feature: string;
  ok: boolean;
  detail: string;
  /** The Linux release that added the feature (src/bpf/requirements.ts). */
  since?: string;
}

const MAP_CHECKS: Array<[string, number, number, number, number]> = [
  // [name, type, key size, value size, flags]
  ['BPF_MAP_TYPE_HASH', MAP_TYPES.HASH, 4, 4, 0],
  ['BPF_MAP_TYPE_ARRAY', MAP_TYPES.ARRAY, 4, 4, 0],
  ['BPF_MAP_TYPE_PERCPU_ARRAY', MAP_TYPES.PERCPU_ARRAY, 4, 8, 0],
  ['BPF_MAP_TYPE_PERCPU_HASH', MAP_TYPES.PERCPU_HASH, 12, 8, 0],
  ['BPF_MAP_TYPE_LRU_HASH', MAP_TYPES.LRU_HASH, 8, 4, 0],
  ['BPF_MAP_TYPE_LPM_TRIE', MAP_TYPES.LPM_TRIE, 20, 1, 1 /* BPF_F_NO_PREALLOC */],
  ['BPF_MAP_TYPE_SOCKHASH', MAP_TYPES.SOCKHASH, 36, 8, 0],
];

/**
 * SOCKMESH_PROBE_FAIL=TEXT: every check whose name contains TEXT fails as on a kernel without the
 * feature (e.g. BPF_MAP_TYPE_SOCKHASH). For testing and rehearsing the agent's fallback.
 */
function forcedOff(feature: string): void {
  const off = process.env.SOCKMESH_PROBE_FAIL;
  if (off && feature.includes(off)) throw new NotSupportedError(feature, `turned off by SOCKMESH_PROBE_FAIL=${off}`);
}

function withSince(c: ProbeCheck): ProbeCheck {
  const since = sinceOf(c.feature);
  return since ? { ...c, since } : c;
}

async function step(checks: ProbeCheck[], feature: string, fn: () => Promise<string> | string): Promise<boolean> {
  try {
    forcedOff(feature);
    checks.push(withSince({ feature, ok: true, detail: await fn() }));
    return true;
  } catch (e) {
    const err = e as Error;
    checks.push(withSince({ feature: err instanceof NotSupportedError ? err.feature : feature, ok: false, detail: err.message }));
    return false;
  }
}

/** Runs every check; stops at the first that later ones depend on. Needs root. */
export async function probeKernel(objectPath = defaultObjectPath()): Promise<ProbeCheck[]> {
  const checks: ProbeCheck[] = [];
  if (!(await step(checks, 'bpffs', async () => { await ensureBpffs(); return `mounted at ${BPFFS}`; }))) return checks;
  const cgMount = cgroup2Mount();
  await step(checks, 'cgroup2', () => {
    if (!cgMount) throw new Error('no cgroup2 mount');
    return `mounted at ${cgMount}`;
  });
  await step(checks, 'BTF', () => {
    if (!existsSync('/sys/kernel/btf/vmlinux')) throw new Error('/sys/kernel/btf/vmlinux is missing');
    return 'kernel BTF present';
  });
  for (const [name, type, k, v, flags] of MAP_CHECKS) {
    await step(checks, name, () => {
      bpf.close(bpf.mapCreate(type, 'sm_probe', k, v, 16, flags));
      return 'created';
    });
  }
  const layout = pinLayout(`${BPFFS}/sockmesh-probe-${process.pid}`);
  const cgroup = cgMount ? `${cgMount}/sockmesh-probe-${process.pid}` : undefined;
  try {
    if (!(await step(checks, 'load sockmesh.bpf.o', async () => { await loadAndPin(layout, objectPath); return 'every program passed the verifier'; }))) return checks;
    let scratch: string | undefined;
    if (cgroup) {
      try {
        mkdirSync(cgroup);
        scratch = cgroup;
      } catch (e) {
        // A DaemonSet mounts the host's cgroup2 read-only: loading was probed, attaching is
        // checked by the real attach (which fails the start, naming the error).
        checks.push({ feature: 'attach', ok: true, detail: `not probed: no scratch cgroup can be made (${(e as Error).message})` });
      }
    }
    if (scratch) {
      await step(checks, 'attach', async () => {
        const attached = await attachAll(layout, scratch!);
        return `attached ${attached.map((p) => p.name).join(', ')} to a scratch cgroup`;
      });
    }
  } finally {
    if (cgroup && existsSync(cgroup)) {
      await detach(layout, cgroup);
      rmdirSync(cgroup);
    }
    unpin(layout);
  }
  return checks;
}

/** The first check eBPF mode cannot do without, or undefined when every one passed. */
export async function missingFeature(): Promise<ProbeCheck | undefined> {
  return (await probeKernel()).find((c) => !c.ok);
}
