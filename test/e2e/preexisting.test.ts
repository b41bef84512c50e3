// Connections that predate capture (first install on a busy node): the agent counts them when it
// first attaches (a log line and a metric per pod), and leaves them alone: they keep working,
// uncaptured and unspliced, while new connections are captured.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { NodeTopology } from '../../src/topology/node.js';
import { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { PEER } from '../helpers/mesh.js';
import { askFromPod } from '../helpers/pods.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

interface Family { name: string; metrics: Array<{ labels?: Record<string, string>; value?: string }> }

privileged('connections that predate capture', () => {
  const instance = uniqueName('e');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const cfgPath = join(dir, 'mesh.yaml');
  let node: NodeTopology;
  let agent: Proc | undefined;

  beforeAll(async () => {
    node = await NodeTopology.create(instance, ['a']);
    const sidecar = node.spawnNode('a', PEER, ['serve', '--host', '127.0.0.1', '--port', '15001', '--name', 'sidecar', '--mode', 'origdst'], 'sidecar');
    const app = node.spawnNode('a', PEER, ['serve', '--host', '127.0.0.1', '--port', '7000', '--name', 'local-app', '--mode', 'whoami'], 'app');
    await Promise.all([sidecar, app].map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
    writeFileSync(cfgPath, `services:\n  - { name: s, addresses: [10.96.0.20], ports: [9080], splice: always }\npods:\n  - { name: pod-a, cgroup: a, netns: ${node.pod('a').netns} }\n`);
  });

  afterAll(async () => {
    await agent?.kill();
    await runCli(['down', '--instance', instance]);
    await node?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts them at first attach, leaves them working, and captures new connections', async () => {
    // A connection inside the pod, open before any capture (both its ends are sockets of the pod).
    const old = node.spawnNode('a', PEER, ['ask', '--host', '127.0.0.1', '--port', '7000'], 'old connection');
    await old.waitFor((l) => l.event === 'connected', slow(10_000));
    old.send('before');
    await old.waitFor((l) => l.event === 'reply', slow(10_000));

    agent = new Proc('agent', process.execPath, ['bin/sockmesh.js', 'agent', '--config', cfgPath, '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0']);
    const ready = await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
    const warn = agent.lines.find((l) => l.msg === 'connections that predate capture stay uncaptured and unspliced until they reconnect');
    expect(warn?.pods).toEqual({ 'pod-a': 2 });
    const port = String(ready.listen).split(':')[1];
    const fams = parsePrometheusTextFormat(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()) as Family[];
    const g = fams.find((f) => f.name === 'sockmesh_connections_predating_capture');
    expect(g?.metrics.find((m) => m.labels?.pod === 'pod-a')?.value).toBe('2');

    // The old connection keeps working as it was; a new one is captured.
    old.send('after');
    const replies = await old.waitFor(() => old.lines.filter((l) => l.event === 'reply').length === 2, slow(10_000)).then(() => old.lines.filter((l) => l.event === 'reply'));
    expect(replies.map((r) => (r.reply as { line: string; server: string }).line)).toEqual(['before', 'after']);
    expect(replies.every((r) => (r.reply as { server: string }).server === 'local-app')).toBe(true);
    old.child.stdin!.end();
    expect(await askFromPod(node, 'a', '10.96.0.20')).toMatchObject({ server: 'sidecar', origDst: { address: '10.96.0.20' } });

    // A restart adopts the data path: nothing is counted again.
    await agent.kill();
    agent = new Proc('agent', process.execPath, ['bin/sockmesh.js', 'agent', '--config', cfgPath, '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0']);
    await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
    expect(agent.lines.some((l) => l.msg === 'connections that predate capture stay uncaptured and unspliced until they reconnect')).toBe(false);
  });
});
