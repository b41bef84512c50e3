// The sockhash never pairs a pod's socket with one outside the attached cgroup: a listener on the
// sidecar's port that runs in the pod's namespace but not in its cgroup gets the captured
// connection (capture is by address), but its accepted socket never joins the sockhash (sockops runs
// only for sockets in the attached cgroup), so nothing is spliced to it and its data takes the stack.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pinLayout } from '../../src/bpf/pins.js';
import { InstanceMaps } from '../../src/bpf/maps.js';
import { pinRoot } from '../../src/bpf/bpffs.js';
import { NodeTopology } from '../../src/topology/node.js';
import { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

privileged('sockets outside the attached cgroup', () => {
  const instance = uniqueName('o');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  let node: NodeTopology;
  let outsider: Proc | undefined;

  beforeAll(async () => {
    node = await NodeTopology.create(instance, ['a']);
    // In the pod's namespace, but in this test's own cgroup (outside the attached parent).
    outsider = new Proc('outside listener', 'ip', ['netns', 'exec', node.pod('a').netns, process.execPath, PEER, 'serve', '--host', '127.0.0.1', '--port', '15001', '--name', 'outside', '--mode', 'origdst']);
    await outsider.waitFor((l) => l.event === 'ready', slow(30_000));
    const cfg = join(dir, 'mesh.yaml');
    writeFileSync(cfg, `services:\n  - { name: s, addresses: [10.96.0.20], ports: [9080], splice: always }\npods:\n  - { name: pod-a, cgroup: a, netns: ${node.pod('a').netns} }\n`);
    expect((await runCli(['up', '--cgroup', node.parent, '--instance', instance, '--config', cfg])).code).toBe(0);
  });

  afterAll(async () => {
    await outsider?.kill();
    await runCli(['down', '--instance', instance]);
    await node?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never puts the outside socket into the sockhash, so nothing is spliced to it', async () => {
    const app = node.spawnNode('a', PEER, ['ask', '--host', '10.96.0.20', '--port', '9080'], 'app');
    await app.waitFor((l) => l.event === 'connected', slow(10_000));
    for (const line of ['one', 'two', 'three']) app.send(line);
    await app.waitFor(() => app.lines.filter((l) => l.event === 'reply').length === 3, slow(10_000));
    const replies = app.lines.filter((l) => l.event === 'reply').map((l) => l.reply as { server: string; line: string });
    expect(replies.map((r) => `${r.server} ${r.line}`)).toEqual(['outside one', 'outside two', 'outside three']);
    const maps = new InstanceMaps(pinLayout(pinRoot(instance)));
    try {
      // Only the app's own socket joined: a pair needs both ends.
      expect(maps.sockhash.rawEntries()).toHaveLength(1);
    } finally {
      maps.close();
    }
    app.child.stdin!.end();
  });
});
