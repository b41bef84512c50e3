// What a test run may have left behind: pin dirs, cgroups, namespaces named by the test helpers.
import { existsSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { STATE_DIR } from '../../src/instance/record.js';
import { cgroup2Mount } from '../../src/bpf/cgroup.js';

/** Leftovers whose name contains `marker` (e.g. `t<pid>` of one test process, or `t` for all). */
export function leftovers(match: (name: string) => boolean): string[] {
  const out: string[] = [];
  if (existsSync('/sys/fs/bpf')) {
    for (const d of readdirSync('/sys/fs/bpf')) if (d.startsWith('sockmesh-') && match(d)) out.push(`pin dir /sys/fs/bpf/${d}`);
  }
  // Records, locks, overrides and sockets of instances, in the state directory.
  if (existsSync(STATE_DIR)) for (const f of readdirSync(STATE_DIR)) if (match(`sockmesh-${f}`)) out.push(`state file ${STATE_DIR}/${f}`);
  const cg = cgroup2Mount();
  if (cg) for (const d of readdirSync(cg)) if (d.startsWith('sockmesh-') && match(d)) out.push(`cgroup ${cg}/${d}`);
  try {
    const ns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const line of ns.split('\n')) {
      const name = line.split(' ')[0];
      if (name?.startsWith('sm-') && match(name)) out.push(`netns ${name}`);
    }
  } catch {
    /* no iproute2: no namespaces either */
  }
  return out;
}
