// One instance meshing several pods of a node: every per-connection key carries the pod's network
// namespace, so two pods whose app->sidecar connections share one 4-tuple each read their own
// SO_ORIGINAL_DST and are never spliced to each other; a cgroup below the parent that is not a
// listed pod is never captured; per-pod settings and counters stay per pod.
import { writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { status } from '../../src/instance/status.js';
import { pinLayout } from '../../src/bpf/pins.js';
import { pinRoot } from '../../src/bpf/bpffs.js';
import { InstanceMaps } from '../../src/bpf/maps.js';
import { NodeTopology } from '../../src/topology/node.js';
import type { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const PEER = 'dist/src/topology/peer.js';

privileged('one instance, several pods', () => {
  const instance = uniqueName('m');
  const cfgPath = join(tmpdir(), `sockmesh-${instance}.yaml`);
  let node: NodeTopology;
  let isUp = false;

  beforeAll(async () => {
    node = await NodeTopology.create(instance, ['a', 'b', 'stray']);
    writeFileSync(cfgPath, `
services:
  - { name: reviews, addresses: [10.96.0.20], ports: [9080], splice: always }
  - { name: ratings, addresses: [10.96.0.21], ports: [9080], splice: always }
pods:
  - { name: pod-a, cgroup: a, netns: ${node.pod('a').netns} }
  - { name: pod-b, cgroup: b, netns: ${node.pod('b').netns}, sidecar: { uid: 1500 } }
`);
    // Each pod's stand-in sidecar answers with the SO_ORIGINAL_DST it read.
    const sidecars = [
      node.spawnNode('a', PEER, ['serve', '--host', '127.0.0.1', '--port', '15001', '--name', 'sidecar-a', '--mode', 'origdst'], 'sidecar a'),
      node.spawnNode('b', PEER, ['serve', '--host', '127.0.0.1', '--port', '15001', '--name', 'sidecar-b', '--mode', 'origdst'], 'sidecar b'),
      node.spawnNode('stray', PEER, ['serve', '--host', '127.0.0.1', '--port', '15001', '--name', 'sidecar-stray', '--mode', 'origdst'], 'sidecar stray'),
    ];
    await Promise.all(sidecars.map((s) => s.waitFor((l) => l.event === 'ready', slow(30_000))));
    const r = await runCli(['up', '--cgroup', node.parent, '--instance', instance, '--config', cfgPath]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    isUp = true;
  });

  afterAll(async () => {
    if (isUp) await runCli(['down', '--instance', instance]);
    await node?.close();
    rmSync(cfgPath, { force: true });
  });

  async function ask(pod: string, host: string, localPort?: number): Promise<{ proc: Proc; reply: Record<string, unknown> }> {
    const args = ['ask', '--host', host, '--port', '9080', ...(localPort ? ['--local-port', String(localPort)] : [])];
    const proc = node.spawnNode(pod, PEER, args, `client ${pod}`);
    let first;
    try {
      first = await proc.waitFor((l) => l.event === 'connected' || l.event === 'error', slow(10_000));
    } catch (e) {
      return { proc, reply: { error: `${(e as Error).message} ${proc.stderr}` } };
    }
    if (first.event === 'error') return { proc, reply: { error: first.message } };
    proc.send('hello');
    const reply = await proc.waitFor((l) => l.event === 'reply', slow(10_000));
    return { proc, reply: reply.reply as Record<string, unknown> };
  }

  it('gives each pod its own SO_ORIGINAL_DST when both pods use the same 4-tuple at once, and never splices across', async () => {
    const before = (await status(instance)).counters;
    // Both connections are 127.0.0.1:40000 -> 127.0.0.1:15001, one in each pod's namespace, open together.
    const a = await ask('a', '10.96.0.20', 40000);
    const b = await ask('b', '10.96.0.21', 40000);
    expect(a.reply).toMatchObject({ server: 'sidecar-a', local: '127.0.0.1:15001', peer: '127.0.0.1:40000', origDst: { address: '10.96.0.20', port: 9080 } });
    expect(b.reply).toMatchObject({ server: 'sidecar-b', local: '127.0.0.1:15001', peer: '127.0.0.1:40000', origDst: { address: '10.96.0.21', port: 9080 } });
    // Both pairs were spliced, each within its own namespace: four sockets, two per namespace.
    const maps = new InstanceMaps(pinLayout(pinRoot(instance)));
    try {
      const keys = maps.sockhash.entries().map(([k]) => k);
      const netns = new Set(keys.map((k) => k.netns));
      expect(netns.size).toBe(2);
      for (const ns of netns) expect(keys.filter((k) => k.netns === ns)).toHaveLength(2);
    } finally {
      maps.close();
    }
    // Messages on each keep reaching their own pod's sidecar while the other connection lives.
    for (const [c, name] of [[a, 'sidecar-a'], [b, 'sidecar-b']] as const) {
      for (let i = 0; i < 20; i++) c.proc.send(`again ${i}`);
      await c.proc.waitFor((l) => l.event === 'reply' && (l.reply as { line: string }).line === 'again 19', slow(10_000));
      const replies = c.proc.lines.filter((l) => l.event === 'reply').map((l) => l.reply as { server: string; line: string });
      expect(replies.map((r) => r.server)).toEqual(Array(21).fill(name));
      expect(replies.slice(1).map((r) => r.line)).toEqual(Array.from({ length: 20 }, (_, i) => `again ${i}`));
    }
    const after = (await status(instance)).counters;
    expect(after.origDstHits - before.origDstHits).toBe(2);
    expect(after.sockmapInserts - before.sockmapInserts).toBe(4);
    expect(after.sockmapRedirects - before.sockmapRedirects).toBeGreaterThan(0);
    a.proc.child.stdin!.end();
    b.proc.child.stdin!.end();
    await Promise.all([a.proc.exited, b.proc.exited]);
  });

  it('never captures a cgroup below the parent that is not a listed pod', async () => {
    const r = await ask('stray', '10.96.0.20');
    // Not rewritten: 10.96.0.20 is unreachable from the stray pod's namespace.
    expect(String(r.reply.error)).toMatch(/ENETUNREACH|EHOSTUNREACH|ETIMEDOUT/);
  });

  it('counts per pod and per service', async () => {
    const st = await status(instance);
    expect(st.pods.map((p) => p.name).sort()).toEqual(['pod-a', 'pod-b']);
    const pa = st.pods.find((p) => p.name === 'pod-a')!;
    const pb = st.pods.find((p) => p.name === 'pod-b')!;
    expect(pa.counters.connectRewrites).toBe(1);
    expect(pb.counters.connectRewrites).toBe(1);
    expect(pa.netnsCookie).not.toBe(pb.netnsCookie);
    expect(st.services.find((s) => s.name === 'reviews')!.counters).toMatchObject({ captured: 1, spliced: 1 });
    expect(st.services.find((s) => s.name === 'ratings')!.counters).toMatchObject({ captured: 1, spliced: 1 });
  });
});
