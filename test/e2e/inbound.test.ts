// Inbound capture and hops between pods of one node in eBPF mode (issue 12): sk_lookup hands a
// connection to a meshed pod's captured app port to its sidecar's inbound listener, whoever the
// client is (another pod of the node, or a namespace outside the mesh), SO_ORIGINAL_DST names the
// app's address and port, excluded ports reach the app directly, and every local hop of
// app -> sidecar -> sidecar -> app can be spliced.
import { execFileSync } from 'node:child_process';
import { rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { status } from '../../src/instance/status.js';
import { pinRoot } from '../../src/bpf/bpffs.js';
import { pinLayout } from '../../src/bpf/pins.js';
import { InstanceMaps } from '../../src/bpf/maps.js';
import { NodeTopology } from '../../src/topology/node.js';
import type { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const PEER = 'dist/src/topology/peer.js';
const CLI = 'bin/sockmesh.js';
const A = '10.201.0.11';
const B = '10.201.0.12';
const OUT = '10.201.0.13';

privileged('inbound capture and hops between pods of one node (eBPF)', () => {
  const instance = uniqueName('in');
  const cfgPath = join(tmpdir(), `sockmesh-${instance}.yaml`);
  let node: NodeTopology;
  let sidecarB: Proc;
  let isUp = false;

  function startSidecar(pod: string): Proc {
    return node.spawnNode(pod, CLI, ['sidecar', '--uid', '1337', '--log-connections'], `sidecar ${pod}`);
  }

  /** The config, with or without pod-b. */
  function writeConfig(withB = true): void {
    writeFileSync(cfgPath, `
services:
  - { name: b, addresses: [${B}], ports: [9080], splice: always }
spliceHops: always
capture: { excludeInboundPorts: [9082] }
pods:
  - { name: pod-a, cgroup: a, netns: ${node.pod('a').netns} }
${withB ? `  - { name: pod-b, cgroup: b, netns: ${node.pod('b').netns} }` : ''}
`);
  }

  beforeAll(async () => {
    node = await NodeTopology.create(instance, [['a', A], ['b', B], ['out', OUT]]);
    writeConfig();
    // Pod b's app (in its pod's cgroup, as a container is) on a captured and an excluded port; both
    // sidecars listen before sockmesh starts (their listeners are registered by the agent).
    sidecarB = startSidecar('b');
    const procs = [
      node.spawnNode('b', PEER, ['serve', '--host', '0.0.0.0', '--port', '9080', '--name', 'app-b', '--mode', 'whoami'], 'app b'),
      node.spawnNode('b', PEER, ['serve', '--host', '0.0.0.0', '--port', '9082', '--name', 'app-b-excluded', '--mode', 'whoami'], 'app b 9082'),
      startSidecar('a'),
      sidecarB,
    ];
    await Promise.all(procs.map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
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

  /** One line on a fresh connection from `pod` (as uid 4000 for the meshed pods' apps). */
  async function ask(pod: string, host: string, port: number, line = 'hello'): Promise<{ proc: Proc; reply: Record<string, unknown> }> {
    const proc = node.spawnNode(pod, PEER, ['ask', '--host', host, '--port', String(port)], `client ${pod}`);
    const first = await proc.waitFor((l) => l.event === 'connected' || l.event === 'error', slow(10_000));
    if (first.event === 'error') return { proc, reply: { error: first.message } };
    proc.send(line);
    const reply = await proc.waitFor((l) => l.event === 'reply', slow(10_000));
    return { proc, reply: reply.reply as Record<string, unknown> };
  }

  function done(p: Proc): Promise<unknown> {
    p.child.stdin!.end();
    return p.exited;
  }

  const inboundSeen = (sidecar: Proc) => sidecar.lines.filter((l) => l.event === 'connection' && l.listener === 15006);

  it('sends a connection from a namespace outside the mesh to the sidecar, which reads the app\'s address and port', async () => {
    const seen = inboundSeen(sidecarB).length;
    const r = await ask('out', B, 9080);
    // The app hears it from the sidecar's passthrough source; the sidecar saw the client's own address.
    expect(r.reply).toMatchObject({ server: 'app-b', local: `${B}:9080`, line: 'hello' });
    expect(String(r.reply.peer)).toMatch(/^127\.0\.0\.6:/);
    await sidecarB.waitFor(() => inboundSeen(sidecarB).length > seen, slow(10_000));
    expect(inboundSeen(sidecarB).at(-1)).toMatchObject({ originalDst: { address: B, port: 9080 } });
    // Source preserved: the sidecar's peer is the client's own socket.
    expect(inboundSeen(sidecarB).at(-1)!.peer).toBe(r.proc.lines.find((l) => l.event === 'connected')!.local);
    expect(String(inboundSeen(sidecarB).at(-1)!.peer)).toMatch(new RegExp(`^${OUT.replace(/\./g, '\\.')}:`));
    await done(r.proc);
  });

  it('lets an excluded inbound port and Istio\'s own ports reach the app directly', async () => {
    const seen = inboundSeen(sidecarB).length;
    const r = await ask('out', B, 9082);
    expect(r.reply).toMatchObject({ server: 'app-b-excluded', local: `${B}:9082` });
    expect(String(r.reply.peer)).toMatch(new RegExp(`^${OUT.replace(/\./g, '\\.')}:`));
    await done(r.proc);
    // 15008 is never captured: nothing listens there, so the client is refused by the app's
    // namespace itself, not handed to the sidecar.
    const hbone = await ask('out', B, 15008);
    expect(String(hbone.reply.error)).toMatch(/ECONNREFUSED/);
    expect(inboundSeen(sidecarB).length).toBe(seen);
  });

  it('splices every local hop of app -> sidecar -> sidecar -> app between two pods of the node', async () => {
    const before = (await status(instance)).pods;
    const r = await ask('a', B, 9080, 'first');
    expect(r.reply).toMatchObject({ server: 'app-b', local: `${B}:9080`, line: 'first' });
    for (let i = 0; i < 50; i++) r.proc.send(`line ${i}`);
    await r.proc.waitFor((l) => l.event === 'reply' && (l.reply as { line: string }).line === 'line 49', slow(10_000));
    const lines = r.proc.lines.filter((l) => l.event === 'reply').map((l) => (l.reply as { line: string }).line);
    expect(lines).toEqual(['first', ...Array.from({ length: 50 }, (_, i) => `line ${i}`)]);
    // Three hops, six sockets: a's app and sidecar (captured), a's sidecar and b's sidecar (across
    // namespaces), b's sidecar and b's app (from 127.0.0.6).
    const maps = new InstanceMaps(pinLayout(pinRoot(instance)));
    try {
      const keys = maps.sockhash.entries().map(([k]) => k);
      expect(keys).toHaveLength(6);
      const ns = (p: string) => BigInt((before.find((x) => x.name === p)!.netnsCookie));
      expect(keys.filter((k) => k.netns === ns('pod-a'))).toHaveLength(3);
      expect(keys.filter((k) => k.netns === ns('pod-b'))).toHaveLength(3);
      expect(keys.some((k) => k.saddr === B && k.sport === 9080 && k.daddr === A)).toBe(true);
      expect(keys.some((k) => k.saddr === '127.0.0.6' && k.daddr === B && k.dport === 9080)).toBe(true);
    } finally {
      maps.close();
    }
    const after = (await status(instance)).pods;
    const delta = (p: string, c: string) => (after.find((x) => x.name === p)!.counters as Record<string, number>)[c]
      - (before.find((x) => x.name === p)!.counters as Record<string, number>)[c];
    expect(delta('pod-a', 'connectRewrites')).toBe(1);
    expect(delta('pod-a', 'hopSplices')).toBe(1); // a's sidecar to b
    expect(delta('pod-b', 'hopSplices')).toBe(1); // b's sidecar to its app
    expect(delta('pod-b', 'inboundToSidecar')).toBe(1);
    // Each direction of each hop redirected: a counts its two hops, b the last one (a write may
    // carry several lines, so these are at least one per direction, not one per line).
    expect(delta('pod-a', 'sockmapRedirects')).toBeGreaterThanOrEqual(4);
    expect(delta('pod-b', 'sockmapRedirects')).toBeGreaterThanOrEqual(2);
    await done(r.proc);
  });

  it('refuses inbound connections while the sidecar is away and takes its new listener when it is back', async () => {
    await sidecarB.kill();
    const before = (await status(instance)).pods.find((p) => p.name === 'pod-b')!.counters as Record<string, number>;
    const refused = await ask('out', B, 9080);
    expect(String(refused.reply.error)).toMatch(/ECONNREFUSED/);
    expect((await status(instance)).pods.find((p) => p.name === 'pod-b')!.inboundListener).toBe(false);
    const mid = (await status(instance)).pods.find((p) => p.name === 'pod-b')!.counters as Record<string, number>;
    expect(mid.inboundRefusedNoListener - before.inboundRefusedNoListener).toBeGreaterThanOrEqual(1);
    // Started after sockmesh: sockops registers its listener as it listens.
    sidecarB = startSidecar('b');
    await sidecarB.waitFor((l) => l.event === 'ready', slow(30_000));
    const r = await ask('out', B, 9080);
    expect(r.reply).toMatchObject({ server: 'app-b', local: `${B}:9080` });
    expect(inboundSeen(sidecarB)).toHaveLength(1);
    expect((await status(instance)).pods.find((p) => p.name === 'pod-b')!.inboundListener).toBe(true);
    await done(r.proc);
  });

  it('a pod leaving the mesh takes its listener registration and sk_lookup with it; back, both are found again', async () => {
    const podB = (await status(instance)).pods.find((p) => p.name === 'pod-b')!;
    const maps = new InstanceMaps(pinLayout(pinRoot(instance)));
    try {
      expect(maps.listeners.get(podB.podId)).toBeDefined();
      writeConfig(false);
      expect((await runCli(['up', '--cgroup', node.parent, '--instance', instance, '--config', cfgPath])).code).toBe(0);
      // Its id may name another pod next: no listener of pod-b's stays under it.
      expect(maps.listeners.get(podB.podId)).toBeUndefined();
      const direct = await ask('out', B, 9080);
      expect(direct.reply).toMatchObject({ server: 'app-b' });
      expect(String(direct.reply.peer)).toMatch(new RegExp(`^${OUT.replace(/\./g, '\\.')}:`));
      await done(direct.proc);
      writeConfig(true);
      expect((await runCli(['up', '--cgroup', node.parent, '--instance', instance, '--config', cfgPath])).code).toBe(0);
      expect((await status(instance)).pods.find((p) => p.name === 'pod-b')!.inboundListener).toBe(true);
      const captured = await ask('out', B, 9080);
      expect(String(captured.reply.peer)).toMatch(/^127\.0\.0\.6:/);
      await done(captured.proc);
    } finally {
      maps.close();
    }
  });

  it('attaches to each pod\'s namespace only, and down takes it away', async () => {
    const nsIno = (p: string) => statSync(`/var/run/netns/${node.pod(p).netns}`).ino;
    const links = () => (JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ type: string; netns_ino?: number; attach_type?: string }>)
      .filter((l) => l.type === 'netns' && l.attach_type === 'sk_lookup').map((l) => l.netns_ino);
    expect(links()).toEqual(expect.arrayContaining([nsIno('a'), nsIno('b')]));
    expect(links()).not.toContain(nsIno('out'));
    const r = await runCli(['down', '--instance', instance]);
    expect(r.code).toBe(0);
    isUp = false;
    expect(links()).not.toContain(nsIno('a'));
    expect(links()).not.toContain(nsIno('b'));
  });
});
