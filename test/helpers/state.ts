// Kernel state of an instance, for byte-for-byte before/after comparisons: its config-driven maps,
// what is attached to a cgroup, the sockmesh rules of a namespace.
import { execFileSync } from 'node:child_process';
import { pinLayout } from '../../src/bpf/pins.js';
import { InstanceMaps } from '../../src/bpf/maps.js';
import { pinRoot } from '../../src/bpf/bpffs.js';

/** Every config-driven map of an instance (both slots, sm_gen, sm_config), as hex. */
export function mapDump(instance: string): Record<string, string[]> {
  const maps = new InstanceMaps(pinLayout(pinRoot(instance)));
  try {
    const out: Record<string, string[]> = {};
    const all: Record<string, { rawEntries(): Array<{ key: Buffer; value: Buffer }> }> = { gen: maps.gen, config: maps.config };
    maps.slots.forEach((slot, i) => { for (const [name, m] of Object.entries(slot)) all[`${name}${i}`] = m; });
    for (const [name, m] of Object.entries(all)) out[name] = m.rawEntries().map((e) => `${e.key.toString('hex')}=${e.value.toString('hex')}`).sort();
    return out;
  } finally {
    maps.close();
  }
}

export function attached(cgroup: string): string {
  return execFileSync('bpftool', ['cgroup', 'show', cgroup], { encoding: 'utf8' });
}

/** sockmesh's nat rules in a namespace: iptables (4) or ip6tables (6). */
export function natRules(netns: string, family: 4 | 6 = 4): string[] {
  return execFileSync('ip', ['netns', 'exec', netns, family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', 'nat'], { encoding: 'utf8' })
    .split('\n').filter((l) => l.startsWith('-A') && l.includes('SOCKMESH'));
}
