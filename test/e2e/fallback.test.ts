// Kernel fallback: on a kernel without a feature eBPF mode needs (forced off here through the
// probe's SOCKMESH_PROBE_FAIL), the agent says which feature and meshes every pod in iptables mode:
// each pod's sidecar gets its connections with SO_ORIGINAL_DST (from conntrack), edits and switches
// apply, and down removes every pod's rules. With --mode ebpf it exits naming the feature.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { NodeTopology } from '../../src/topology/node.js';
import { Proc } from '../../src/topology/proc.js';
import { cliJson, runCli } from '../helpers/cli.js';
import { askFromPod, routeToRefusingRemote, uidSidecar } from '../helpers/pods.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';
import { attached, natRules } from '../helpers/state.js';

privileged('kernel fallback to iptables mode', () => {
  const instance = uniqueName('f');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const cfgPath = join(dir, 'mesh.yaml');
  let node: NodeTopology;
  let agent: Proc | undefined;
  const config = (reviewsRedirect: boolean) => `services:
  - { name: reviews, addresses: [10.96.0.20], ports: [9080], redirect: ${reviewsRedirect} }
  - { name: ratings, addresses: [10.96.0.21], ports: [9080] }
pods:
  - { name: pod-a, cgroup: a, netns: ${node.pod('a').netns} }
  - { name: pod-b, cgroup: b, netns: ${node.pod('b').netns} }
`;
  const save = (text: string) => {
    writeFileSync(`${cfgPath}.tmp`, text);
    renameSync(`${cfgPath}.tmp`, cfgPath);
  };
  const spawnAgent = (extra: string[]) => new Proc('agent', 'env', ['SOCKMESH_PROBE_FAIL=BPF_MAP_TYPE_SOCKHASH', process.execPath, 'bin/sockmesh.js', 'agent',
    '--config', cfgPath, '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0', ...extra]);

  let unroute = () => {};

  beforeAll(async () => {
    node = await NodeTopology.create(instance, ['a', 'b']);
    unroute = routeToRefusingRemote(node, ['a', 'b']);
    for (const pod of ['a', 'b']) await uidSidecar(node, pod);
    save(config(true));
  });

  afterAll(async () => {
    await agent?.kill();
    await runCli(['down', '--instance', instance]);
    await node?.close();
    unroute();
    rmSync(dir, { recursive: true, force: true });
  });

  it('with --mode ebpf, exits naming the missing feature and sets nothing up', async () => {
    const p = spawnAgent(['--mode', 'ebpf']);
    const code = await p.exited;
    expect(code).not.toBe(0);
    expect(p.stderr).toMatch(/eBPF mode needs BPF_MAP_TYPE_SOCKHASH, which this kernel does not offer \(.*SOCKMESH_PROBE_FAIL.*\); without --mode ebpf the agent runs iptables mode/);
    expect(natRules(node.pod('a').netns)).toEqual([]);
    expect(attached(node.parent).trim()).toBe('');
  });

  it('falls back to iptables mode for every pod, says why, and captures', async () => {
    agent = spawnAgent([]);
    const warn = await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.includes('running iptables mode for every pod'), slow(60_000));
    expect(warn.feature).toBe('BPF_MAP_TYPE_SOCKHASH');
    await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
    expect(attached(node.parent).trim()).toBe('');
    for (const pod of ['a', 'b']) {
      expect(natRules(node.pod(pod).netns).length, pod).toBeGreaterThan(0);
      expect(await askFromPod(node, pod, '10.96.0.20')).toMatchObject({ server: `sidecar-${pod}`, origDst: { address: '10.96.0.20', port: 9080 } });
    }
    const st = await cliJson<{ mode: string; counters: { connectRewrites: number } }>(['status', '--instance', instance]);
    expect(st.mode).toBe('iptables');
    expect(st.counters.connectRewrites).toBeGreaterThanOrEqual(2);
    const e = await cliJson<{ mode: string; verdict: string; rules: { netns: string; inPlace: boolean } }>(['explain', '--instance', instance, '--pod', 'pod-b', '10.96.0.20:9080']);
    expect(e).toMatchObject({ mode: 'iptables', verdict: 'sidecar-outbound', rules: { netns: node.pod('b').netns, inPlace: true } });
  });

  it('`sockmesh wait` in a pod answers once its rules are in its namespace', async () => {
    const w = node.spawn('a', process.execPath, ['bin/sockmesh.js', 'wait', '--instance', instance, '--timeout', '10s'], 'wait a');
    expect(await w.exited, w.stderr).toBe(0);
    expect(w.lines.map((l) => l.text)).toEqual([`meshed: pod pod-a (instance ${instance})`]);
  });

  it('applies edits and service switches to every pod\'s rules', async () => {
    const seen = agent!.lines.length;
    save(config(false));
    await agent!.waitForFrom(seen, (l) => l.msg === 'reconciled', slow(10_000));
    for (const pod of ['a', 'b']) expect((await askFromPod(node, pod, '10.96.0.20')).error, pod).toMatch(/ECONNREFUSED/);
    const off = await runCli(['service', 'disable', 'ratings', '--instance', instance]);
    expect(off.code, off.stderr).toBe(0);
    expect((await askFromPod(node, 'a', '10.96.0.21')).error).toMatch(/ECONNREFUSED/);
    expect((await runCli(['service', 'reset', 'ratings', '--instance', instance])).code).toBe(0);
    expect(await askFromPod(node, 'b', '10.96.0.21')).toMatchObject({ server: 'sidecar-b', origDst: { address: '10.96.0.21' } });
  });

  it('keeps iptables mode across a restart, and down removes every pod\'s rules', async () => {
    await agent!.kill();
    agent = spawnAgent([]);
    await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
    expect(agent.lines.some((l) => typeof l.msg === 'string' && l.msg.includes('running iptables mode'))).toBe(false); // no new probe: the record says
    expect(await askFromPod(node, 'a', '10.96.0.21')).toMatchObject({ server: 'sidecar-a' });
    await agent.kill();
    agent = undefined;
    const d = await cliJson<{ rules: string }>(['down', '--instance', instance]);
    expect(d.rules).toBe('removed');
    for (const pod of ['a', 'b']) expect(natRules(node.pod(pod).netns), pod).toEqual([]);
  });
});
