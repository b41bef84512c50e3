// `sockmesh explain` against the live kernel: for each case, the rule it names and the outcome of
// a real connection from the pod agree.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Explanation } from '../../src/instance/explain.js';
import { cliJson, runCli } from '../helpers/cli.js';
import { MeshedNode } from '../helpers/meshed-node.js';
import { askFromPod } from '../helpers/pods.js';
import { privileged, uniqueName } from '../helpers/privileged.js';

privileged('sockmesh explain', () => {
  const instance = uniqueName('x');
  let t: MeshedNode;
  let node: MeshedNode['node'];
  let dir: string;
  let cfgPath: string;
  const config = (onRedirect: boolean) => `services:
  - { name: on, addresses: [10.96.0.20], ports: [9080, 9999], splice: always${onRedirect ? '' : ', redirect: false'} }
  - { name: off, addresses: [10.96.0.21], ports: [9080], redirect: false }
  - { name: auto, addresses: [10.96.0.22], ports: [9080] }
  - { name: six, addresses: ['fd00:96::20'], ports: [9080] }
exclude: { outboundPorts: [9999], outboundCIDRs: [10.96.5.0/24] }
pods:
  - { name: pod-a, cgroup: a, netns: ${node.pod('a').netns} }
  - { name: pod-b, cgroup: b, netns: ${node.pod('b').netns} }
`;
  const explain = (dst: string, ...extra: string[]) => cliJson<Explanation>(['explain', '--instance', instance, '--pod', 'pod-a', dst, ...extra]);

  beforeAll(async () => {
    t = await MeshedNode.create(instance, ['a', 'b'], { sidecars: ['a'] });
    ({ node, dir, cfgPath } = t);
    writeFileSync(cfgPath, config(true));
    const up = await runCli(['up', '--cgroup', node.parent, '--config', cfgPath, '--instance', instance]);
    expect(up.code, up.stderr).toBe(0);
  });

  afterAll(() => t?.close());

  it('a listed service, switch on: to the sidecar, spliced as configured — and a real connection agrees', async () => {
    const e = await explain('10.96.0.20:9080');
    expect(e).toMatchObject({ mode: 'ebpf', verdict: 'sidecar-outbound', rule: 'a listed service with its switch on', service: { name: 'on', splice: 'always' } });
    expect(e.splice).toMatch(/^spliced \(splice: always\)/);
    expect(e.goesTo).toMatch(/^127\.0\.0\.1:15001 /);
    expect(e.other).toMatchObject({ mode: 'iptables', verdict: 'sidecar-outbound' });
    expect(await askFromPod(node, 'a', '10.96.0.20')).toMatchObject({ server: 'sidecar-a', origDst: { address: '10.96.0.20', port: 9080 } });
  });

  it('a service switched off: not captured — and a real connection goes direct', async () => {
    const e = await explain('10.96.0.21:9080');
    expect(e).toMatchObject({ verdict: 'direct', rule: 'its service is switched off (redirect: false)', service: { name: 'off', redirect: false } });
    expect((await askFromPod(node, 'a', '10.96.0.21')).error).toMatch(/ENETUNREACH|EHOSTUNREACH/);
  });

  it('names each other rule in the kernel\'s order', async () => {
    expect(await explain('10.96.0.22:9080')).toMatchObject({ verdict: 'sidecar-outbound', splice: expect.stringMatching(/^splice: auto: .*This service now: TCP_NODELAY at connect: spliced; Nagle at connect: nothing learned yet/) });
    expect(await explain('10.96.0.20:9999')).toMatchObject({ verdict: 'direct', rule: 'port 9999 is excluded (excludeOutboundPorts)' });
    expect(await explain('10.96.5.7:9080')).toMatchObject({ verdict: 'direct', rule: '10.96.5.7 is in an excluded CIDR (excludeOutboundCIDRs)' });
    expect(await explain('10.1.2.3:80')).toMatchObject({ verdict: 'direct', rule: 'not a listed service (capture.outbound: services)' });
    expect(await explain('127.0.0.1:9080')).toMatchObject({ verdict: 'direct', rule: 'traffic inside the pod is never captured' });
    // IPv6, and an IPv6 socket's IPv4-mapped destination (the IPv4 service).
    expect(await explain('[fd00:96::20]:9080')).toMatchObject({ destination: '[fd00:96::20]:9080', verdict: 'sidecar-outbound', service: { name: 'six' }, goesTo: expect.stringMatching(/^\[::1\]:15001 .*IP6T_SO_ORIGINAL_DST/) });
    expect(await explain('[::ffff:10.96.0.22]:9080')).toMatchObject({ destination: '10.96.0.22:9080', service: { name: 'auto' } });
    expect(await explain('[::1]:9080')).toMatchObject({ verdict: 'direct', rule: 'traffic inside the pod is never captured' });
    const sc = await explain('10.96.0.20:9080', '--uid', '1337');
    expect(sc).toMatchObject({ verdict: 'direct', rule: 'the sidecar\'s own connections are never captured' });
    expect(sc.checks[0]).toMatch(/= the sidecar/);
  });

  it('reads the live switch: an override-free update of the config changes the answer', async () => {
    writeFileSync(cfgPath, config(false));
    const before = await explain('10.96.0.20:9080');
    expect((await runCli(['up', '--cgroup', node.parent, '--config', cfgPath, '--instance', instance])).code).toBe(0);
    const after = await explain('10.96.0.20:9080');
    expect(after.verdict).toBe('direct');
    expect(after.slot).not.toBe(before.slot);
  });

  it('explains an iptables instance from the config its rules were made from, and what eBPF would do', async () => {
    const ipt = `${instance}i`;
    const cfg = join(dir, 'single.yaml');
    writeFileSync(cfg, `services:
  - { name: on, addresses: [10.96.0.20], ports: [9080], splice: never }
  - { name: off, addresses: [10.96.0.21], ports: [9080], redirect: false }
`);
    try {
      const up = await runCli(['up', '--mode', 'iptables', '--netns', node.pod('b').netns, '--config', cfg, '--instance', ipt]);
      expect(up.code, up.stderr).toBe(0);
      const on = await cliJson<Explanation>(['explain', '--instance', ipt, '10.96.0.20:9080']);
      expect(on).toMatchObject({ mode: 'iptables', verdict: 'sidecar-outbound', service: { name: 'on' }, other: { mode: 'ebpf', verdict: 'sidecar-outbound' } });
      expect(on.other.note).toMatch(/not spliced/);
      expect(await cliJson<Explanation>(['explain', '--instance', ipt, '10.96.0.21:9080'])).toMatchObject({ verdict: 'direct', rule: 'its service is switched off (redirect: false)' });
      expect(on.rules).toMatchObject({ netns: node.pod('b').netns, inPlace: true, missing: [], extra: [] });
      // A rule removed by hand: explain says the live rules no longer are the config's.
      const gone = '-A SOCKMESH_OUTPUT -d 10.96.0.20/32 -p tcp --dport 9080 -j SOCKMESH_REDIRECT';
      execFileSync('ip', ['netns', 'exec', node.pod('b').netns, 'iptables', '-t', 'nat', ...gone.split(' ').map((w) => (w === '-A' ? '-D' : w))]);
      const after = await cliJson<Explanation>(['explain', '--instance', ipt, '10.96.0.20:9080']);
      expect(after.rules).toMatchObject({ inPlace: false, missing: [gone], extra: [] });
      const text = await runCli(['explain', '--instance', ipt, '10.96.0.20:9080']);
      expect(text.stdout).toMatch(/DIFFER from the config: 1 missing/);
    } finally {
      await runCli(['down', '--instance', ipt]);
    }
  });

  describe('refuses what it cannot answer, with exit 2', () => {
    for (const [what, args, message] of [
      ['no --pod with two pods', ['explain', '--instance', instance, '10.96.0.20:9080'], /meshes 2 pods: name one with --pod \(pod-a, pod-b\)/],
      ['an unknown pod', ['explain', '--instance', instance, '--pod', 'nope', '10.96.0.20:9080'], /no pod "nope"/],
      ['a destination without a port', ['explain', '--instance', instance, '--pod', 'pod-a', '10.96.0.20'], /destination must be IPV4:PORT/],
      ['port 0', ['explain', '--instance', instance, '--pod', 'pod-a', '10.96.0.20:0'], /destination must be IPV4:PORT/],
      ['a uid that is no number', ['explain', '--instance', instance, '--pod', 'pod-a', '--uid', 'root', '10.96.0.20:9080'], /--uid must be a number/],
      ['an instance that is not up', ['explain', '--instance', `${instance}none`, '--pod', 'pod-a', '10.96.0.20:9080'], /no sockmesh instance/],
    ] as const) {
      it(what, async () => {
        const r = await runCli([...args]);
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(message);
      });
    }
  });
});
