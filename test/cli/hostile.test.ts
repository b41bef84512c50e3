// Hostile input and faults, through the real CLI and kernel: each case is a finding where capture
// was lost silently or state went out of sockmesh's hands (issue "hostile-input findings").
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordPath } from '../../src/instance/record.js';
import { pinLayout } from '../../src/bpf/pins.js';
import { InstanceMaps } from '../../src/bpf/maps.js';
import { pinRoot } from '../../src/bpf/bpffs.js';
import { CAPACITY } from '../../src/config/capacity.js';
import { PROGRAMS } from '../../src/bpf/programs.js';
import { cliJson, runCli } from '../helpers/cli.js';
import { Mesh } from '../helpers/mesh.js';
import { attached, mapDump, natRules } from '../helpers/state.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

/** Cgroup programs an instance attaches (down detaches each). */
const CGROUP_PROGRAMS = PROGRAMS.filter((p) => p.target === 'cgroup').length;

const SVC = '10.96.0.20';
const GOOD = `services:\n  - { name: reviews, addresses: [${SVC}], ports: [9080] }\n  - { name: ratings, addresses: [${SVC}], ports: [9081] }\n`;

privileged('hostile input and faults', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  let mesh: Mesh;
  const instance = uniqueName('h');
  const instances = [instance];
  const newInstance = (tag: string) => {
    const n = uniqueName(tag);
    instances.push(n);
    return n;
  };
  const scratchNetns = `sm-${uniqueName('x')}`;

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [SVC], [
      { name: 'reviews', host: SVC, port: 9080 },
      { name: 'ratings', host: SVC, port: 9081 },
    ]);
    execFileSync('ip', ['netns', 'add', scratchNetns]);
  });

  afterAll(async () => {
    for (const n of instances) await runCli(['down', '--instance', n]);
    execFileSync('ip', ['netns', 'del', scratchNetns]);
    await mesh?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const upEbpf = (inst: string, config: string, extra: string[] = []) =>
    runCli(['up', '--cgroup', mesh.cgroup, '--instance', inst, '--config', config, ...extra]);

  /** Runs fn with a sibling cgroup of the mesh's for instance `inst`; downs the instance and
   * removes the cgroup afterwards, also when fn fails. */
  async function withCgroup(inst: string, fn: (cg: string) => Promise<void>): Promise<void> {
    const cg = `${mesh.cgroup}-${inst}`;
    execFileSync('mkdir', [cg]);
    try {
      await fn(cg);
    } finally {
      await runCli(['down', '--instance', inst]);
      execFileSync('rmdir', [cg]);
    }
  }

  describe('configs that used to remove every service', () => {
    beforeAll(async () => {
      const r = await upEbpf(instance, file('good.yaml', GOOD), ['--netns', mesh.netns]);
      expect(r.stderr).toBe('');
    });
    afterAll(async () => {
      await runCli(['down', '--instance', instance]);
    });

    for (const [what, path] of [['an empty file', () => file('empty.yaml', '')], ['a comment-only file', () => file('c.yaml', '# nothing here\n\n')],
      ['/dev/null', () => '/dev/null']] as const) {
      it(`refuses ${what} on a live instance and keeps every service`, async () => {
        const before = mapDump(instance);
        const r = await upEbpf(instance, path());
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(/the config is empty; to mesh no services, write `services: \[\]`|not a regular file/);
        expect(mapDump(instance)).toEqual(before);
        const { reply } = await mesh.request(SVC, 9080);
        expect(reply.server).toBe('reviews');
        expect(mesh.sidecarConnections().length).toBeGreaterThan(0);
      });
    }

    it('takes an explicit services: [] as "no services"', async () => {
      const r = await cliJson<{ changes: Record<string, { del: number }> }>(['up', '--cgroup', mesh.cgroup, '--instance', instance, '--config', file('none.yaml', 'services: []\n')]);
      expect(r.changes.sm_services.del).toBe(2);
      await upEbpf(instance, file('good.yaml', GOOD));
    });

    it('refuses empty option values (--netns \'\', --cgroup \'\', --config \'\')', async () => {
      const before = mapDump(instance);
      for (const args of [['--netns', ''], ['--netns', '  ']]) {
        const r = await upEbpf(instance, file('good.yaml', GOOD), args);
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(/--netns is empty/);
      }
      const cg = await runCli(['up', '--cgroup', '', '--instance', instance, '--config', file('good.yaml', GOOD)]);
      expect(cg.code).toBe(2);
      const cf = await runCli(['up', '--cgroup', mesh.cgroup, '--instance', instance, '--config', '']);
      expect(cf.code).toBe(2);
      expect(cf.stderr).toMatch(/config path is empty/);
      expect(mapDump(instance)).toEqual(before);
      const st = await cliJson<{ netns: string }>(['status', '--instance', instance]);
      expect(st.netns).toBe(mesh.netns);
    });

    it('refuses configs over the kernel maps\' capacity, naming the field, and changes nothing', async () => {
      const before = mapDump(instance);
      const many = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i)).join('\n');
      const cases: Array<[string, RegExp]> = [
        [`services:\n${many(17000, (i) => `  - { name: s${i}, addresses: [10.1.${i >> 8}.${i & 255}], ports: [80] }`)}`, /services: 17000 services, the kernel map sm_svc_state holds 16384/],
        [`services:\n${many(1000, (i) => `  - { name: s${i}, addresses: [10.1.${i >> 8}.${i & 255}], ports: [${many(70, (p) => String(2000 + p)).split('\n').join(', ')}] }`)}`,
          /services: 70000 service keys \(addresses × ports\), the kernel map sm_services holds 65536/],
        [`services: []\nexclude: { outboundPorts: [${many(20000, (i) => String(1 + i)).split('\n').join(', ')}] }`, /capture\.excludeOutboundPorts: 2000\d excluded and included ports/],
        [`services: []\nexclude: { outboundCIDRs: [${many(20000, (i) => `10.${i >> 8}.${i & 255}.0/24`).split('\n').join(', ')}] }`, /capture\.excludeOutboundCIDRs: 20000 excluded and included CIDRs/],
        [`services:\n${many(1100, (i) => `  - { name: k${i}, addresses: [10.2.${i >> 8}.${i & 255}], ports: [80], mode: kernel, endpoints: [10.3.0.1] }`)}`,
          /services: 1123100 Maglev table slots \(1021 per kernel-mode service with endpoints\), the kernel map sm_backends holds 1048576/],
        [`services: []\npods:\n${many(1100, (i) => `  - { name: p${i}, cgroup: c${i}, netns: n${i} }`)}`, /pods: 1100 pods, the kernel map sm_pods holds 1024/],
      ];
      // The capacities validation uses are the live maps' own (the Maglev table size is a constant, checked against the header).
      const { maglevSlots: _slots, ...mapCapacities } = CAPACITY;
      const maps = new InstanceMaps(pinLayout(pinRoot(instance)));
      try {
        for (const slot of maps.slots) {
          expect({
            services: slot.svcState.info.maxEntries, serviceKeys: slot.services.info.maxEntries, pods: slot.pods.info.maxEntries,
            portRules: slot.ports.info.maxEntries, cidrRules: slot.cidrs.info.maxEntries, backendSlots: slot.backends.info.maxEntries,
          }).toEqual(mapCapacities);
        }
      } finally {
        maps.close();
      }
      for (const [yaml, message] of cases) {
        const r = await upEbpf(instance, file('big.yaml', yaml));
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(message);
      }
      expect(mapDump(instance)).toEqual(before);
    });

    it('quotes at most a short prefix of a huge value, refuses a 50 MB file unread, and never reads a FIFO', async () => {
      const big = file('big-value.yaml', `services: [{ name: a, ports: [80], splice: "${'x'.repeat(30 * 1024 * 1024)}" }]\n`);
      const r = await upEbpf(instance, big);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/services\[0\]\.splice: must be one of auto, always, never, got string "xxx.*… \(\d+ characters\)/);
      expect(r.stderr.length).toBeLessThan(2000);
      const huge = file('huge.yaml', `services: [{ name: a, ports: [80], splice: "${'x'.repeat(50 * 1024 * 1024)}" }]\n`);
      const h = await upEbpf(instance, huge);
      expect(h.code).toBe(2);
      expect(h.stderr).toMatch(/has \d+ bytes; sockmesh reads at most/);
      expect(h.stderr.length).toBeLessThan(2000);
      const fifo = join(dir, 'fifo.yaml');
      execFileSync('mkfifo', [fifo]);
      const f = await runCli(['up', '--cgroup', mesh.cgroup, '--instance', instance, '--config', fifo], { timeoutMs: 20_000 });
      expect(f.code).toBe(2);
      expect(f.stderr).toMatch(/is not a regular file/);
    });

    it('keeps a live instance in its recorded namespace: a conflicting --netns is refused, the mode switch uses the record', async () => {
      const conflict = await runCli(['up', '--mode', 'iptables', '--netns', scratchNetns, '--instance', instance, '--config', file('good.yaml', GOOD)]);
      expect(conflict.code).toBe(2);
      expect(conflict.stderr).toMatch(/belongs to network namespace sm-/);
      expect(attached(mesh.cgroup)).toMatch(/sm_connect4/);
      // From a private mount namespace (ip netns exec remounts /sys) it cannot see the cgroup: refused.
      const hidden = execFileSyncCode('ip', ['netns', 'exec', scratchNetns, process.execPath, 'bin/sockmesh.js', 'up', '--mode', 'iptables', '--instance', instance, '--config', file('good.yaml', GOOD)]);
      expect(hidden.code).toBe(2);
      expect(hidden.stderr).toMatch(/cannot detach BPF programs: no cgroup2 mount is visible here/);
      expect(natRules(scratchNetns)).toEqual([]);
      expect(attached(mesh.cgroup)).toMatch(/sm_connect4/);
      // Switched from another network namespace without --netns: the rules land in the pod's namespace.
      const sw = execFileSyncCode('nsenter', [`--net=/var/run/netns/${scratchNetns}`, process.execPath, 'bin/sockmesh.js', 'up', '--mode', 'iptables', '--instance', instance, '--config', file('good.yaml', GOOD)]);
      expect(sw.stderr).toBe('');
      expect(sw.code).toBe(0);
      expect(natRules(scratchNetns)).toEqual([]);
      expect(natRules(mesh.netns).join('\n')).toMatch(/-A SOCKMESH_OUTPUT -d 10\.96\.0\.20\/32 -p tcp (-m tcp )?--dport 9080 -j SOCKMESH_REDIRECT/);
      expect(attached(mesh.cgroup)).not.toMatch(/sm_connect4/);
      const { reply } = await mesh.request(SVC, 9080);
      expect(reply.server).toBe('reviews');
      // Back to eBPF: the record knows the cgroup and the namespace.
      const back = await runCli(['up', '--instance', instance, '--config', file('good.yaml', GOOD)]);
      expect(back.stderr).toBe('');
      expect(natRules(mesh.netns)).toEqual([]);
      expect(attached(mesh.cgroup)).toMatch(/sm_connect4/);
    });
  });

  it('refuses to switch an eBPF instance without a recorded namespace to iptables mode', async () => {
    const inst = newInstance('n');
    await withCgroup(inst, async (cg) => {
      expect((await runCli(['up', '--cgroup', cg, '--instance', inst, '--config', file('good.yaml', GOOD)])).code).toBe(0);
      const r = execFileSyncCode('nsenter', [`--net=/var/run/netns/${scratchNetns}`, process.execPath, 'bin/sockmesh.js', 'up', '--mode', 'iptables', '--instance', inst, '--config', file('good.yaml', GOOD)]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/without a recorded network namespace/);
      expect(natRules(scratchNetns)).toEqual([]);
      expect(attached(cg)).toMatch(/sm_connect4/);
    });
  });

  it('keeps two iptables-mode instances in one namespace apart', async () => {
    const a = newInstance('ia');
    const b = newInstance('ib');
    const ra = await runCli(['up', '--mode', 'iptables', '--netns', scratchNetns, '--instance', a, '--config', file('good.yaml', GOOD)]);
    expect(ra.stderr).toBe('');
    const before = natRules(scratchNetns);
    const rb = await runCli(['up', '--mode', 'iptables', '--netns', scratchNetns, '--instance', b, '--config', file('b.yaml', 'services: [{ name: x, ports: [1234] }]\n')]);
    expect(rb.code).toBe(2);
    expect(rb.stderr).toMatch(new RegExp(`already holds the iptables rules of sockmesh instance "${a}"`));
    expect(natRules(scratchNetns)).toEqual(before);
    // down of the other instance leaves a's rules alone.
    await runCli(['down', '--instance', b]);
    expect(natRules(scratchNetns)).toEqual(before);
    const d = await cliJson<{ rules: string }>(['down', '--instance', a]);
    expect(d.rules).toBe('removed');
    expect(natRules(scratchNetns)).toEqual([]);
  });

  it('refuses in iptables mode what only eBPF mode can express, before touching the rules; IPv6 goes to ip6tables', async () => {
    const inst = newInstance('i6');
    const r = await runCli(['up', '--mode', 'iptables', '--netns', scratchNetns, '--instance', inst,
      '--config', file('pods.yaml', 'services: []\npods: [{ name: p, cgroup: p, netns: sm-none }]\n')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pods: iptables mode meshes one pod/);
    expect(natRules(scratchNetns)).toEqual([]);
    expect(natRules(scratchNetns, 6)).toEqual([]);
    // Each family's CIDRs in its own rule set.
    const v6 = await runCli(['up', '--mode', 'iptables', '--netns', scratchNetns, '--instance', inst,
      '--config', file('v6.yaml', "services: []\nexclude: { outboundCIDRs: ['fd00::/8', 10.1.0.0/16] }\n")]);
    expect(v6.stderr).toBe('');
    expect(natRules(scratchNetns, 6)).toContain('-A SOCKMESH_OUTPUT -d fd00::/8 -j RETURN');
    expect(natRules(scratchNetns, 6).join('\n')).not.toMatch(/10\.1\.0\.0/);
    expect(natRules(scratchNetns)).toContain('-A SOCKMESH_OUTPUT -d 10.1.0.0/16 -j RETURN');
    expect(natRules(scratchNetns).join('\n')).not.toMatch(/fd00/);
    await runCli(['down', '--instance', inst]);
    expect(natRules(scratchNetns, 6)).toEqual([]);
    const ports = Array.from({ length: 100 }, (_, i) => 30000 + i).join(', ');
    const ok = await runCli(['up', '--mode', 'iptables', '--netns', scratchNetns, '--instance', inst, '--config', file('ports.yaml', `services: []\nexclude: { outboundPorts: [${ports}] }\n`)]);
    expect(ok.stderr).toBe('');
    expect(natRules(scratchNetns).filter((l) => l.includes('multiport'))).toHaveLength(7);
    await runCli(['down', '--instance', inst]);
  });

  it('serializes 20 simultaneous up of one instance: all succeed, one set attached, capture works, down is clean', async () => {
    const inst = newInstance('c');
    const cfg = file('good.yaml', GOOD);
    const results = await Promise.all(Array.from({ length: 20 }, () => upEbpf(inst, cfg)));
    for (const r of results) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    expect(results.filter((r) => /started in ebpf mode/.test(r.stdout))).toHaveLength(1);
    const show = attached(mesh.cgroup);
    expect(show.match(/sm_connect4/g)).toHaveLength(1);
    const before = mesh.sidecarConnections().length;
    const { reply } = await mesh.request(SVC, 9081);
    expect(reply.server).toBe('ratings');
    const conns = mesh.sidecarConnections();
    expect(conns.length).toBe(before + 1);
    expect(conns.at(-1)).toMatchObject({ originalDst: { address: SVC, port: 9081 } });
    const d = await cliJson<{ removed: boolean; detached: string[] }>(['down', '--instance', inst]);
    expect(d.detached).toHaveLength(CGROUP_PROGRAMS);
    expect(existsSync(pinRoot(inst))).toBe(false);
    expect(existsSync(recordPath(inst))).toBe(false);
  }, slow(180_000));

  it('up never stacks a second set on a cgroup; pins removed by hand take their links (and programs) with them', async () => {
    const inst = newInstance('p');
    const other = newInstance('q');
    // The main instance is up on this cgroup; use a sibling cgroup for this case.
    await withCgroup(inst, async (cg) => {
      const cfg = file('good.yaml', GOOD);
      expect((await runCli(['up', '--cgroup', cg, '--instance', inst, '--config', cfg])).code).toBe(0);
      // A second set on the same cgroup, by another instance, is refused.
      const again = await runCli(['up', '--cgroup', cg, '--instance', other, '--config', cfg]);
      expect(again.code).toBe(2);
      expect(again.stderr).toMatch(/already has sockmesh programs attached that instance .* does not hold/);
      expect(existsSync(pinRoot(other))).toBe(false);
      expect(attached(cg).match(/sm_connect4/g)).toHaveLength(1);
      // The cgroup programs are attached through pinned links: removing the pins by hand drops
      // the links, and the kernel detaches them (nothing half-attached stays behind) once it
      // frees the pins' inodes (after an RCU grace period: waited for, not timed).
      rmSync(pinRoot(inst), { recursive: true });
      for (let i = 0; i < 500 && attached(cg).trim() !== ''; i++) await new Promise((r) => setTimeout(r, 10));
      expect(attached(cg).trim()).toBe('');
      const d = await runCli(['down', '--instance', inst, '--json']);
      expect(d.code).toBe(0);
      expect(existsSync(recordPath(inst))).toBe(false);
    });
  });

  for (const [what, text] of [['truncated', '{"instance": "x", "mode": "eb'], ['{}', '{}']] as const) {
    it(`reports a ${what} record clearly and still cleans up with down`, async () => {
      const inst = newInstance('r');
      await withCgroup(inst, async (cg) => {
        const cfg = file('good.yaml', GOOD);
        expect((await runCli(['up', '--cgroup', cg, '--instance', inst, '--config', cfg])).code).toBe(0);
        writeFileSync(recordPath(inst), text);
        for (const args of [['status'], ['service', 'disable', 'reviews'], ['up', '--cgroup', cg, '--config', cfg]]) {
          const r = await runCli([...args, '--instance', inst]);
          expect(r.code).toBe(2);
          expect(r.stderr).toMatch(/instance record .* is damaged/);
          expect(r.stderr).not.toMatch(/\n\s+at /);
        }
        const d = await cliJson<{ removed: boolean; detached: string[]; notes: string[] }>(['down', '--instance', inst]);
        expect(d.removed).toBe(true);
        expect(d.detached).toHaveLength(CGROUP_PROGRAMS);
        expect(d.notes.join()).toMatch(/damaged/);
        expect(attached(cg).trim()).toBe('');
        expect(existsSync(recordPath(inst))).toBe(false);
        expect(existsSync(pinRoot(inst))).toBe(false);
      });
    });
  }
}, ['bpftool', 'ip', 'iptables-save', 'mkfifo', 'nsenter']);

/** Runs a command to completion and returns its exit code and output (never throws). */
function execFileSyncCode(cmd: string, args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: slow(60_000) });
  return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
}
