// splice: auto learns per service from closed connections: small request/response messages (one
// small segment each, whatever the machine's speed) vote for splicing, bulk writes vote against;
// new connections follow the vote.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { status as instanceStatus } from '../../src/agent/instance.js';
import { packageRoot } from '../../src/util/paths.js';
import { runCli } from '../helpers/cli.js';
import { Mesh } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const SVC = '10.96.0.20';

privileged('splice: auto', () => {
  const instance = uniqueName('a');
  let mesh: Mesh;
  const smload = join(packageRoot(), 'dist', 'smload');
  // In-process: the vote is polled often, and a CLI start costs seconds under emulation (VM lane).
  const status = () => instanceStatus(instance);
  const auto = async () => (await status()).services[0].auto!;

  /** One smload connection through the mesh (rr: echo port, stream: sink port); returns its result. */
  async function load(test: 'rr' | 'stream', size: number): Promise<Record<string, number>> {
    const port = test === 'rr' ? '9100' : '9101';
    const p = mesh.topo.spawn(smload, [test, SVC, port, String(size), String(slow(300) / 1000)], { cgroup: 'mesh', label: `${test} ${size}` });
    const line = await p.waitFor((l) => l.test === test, slow(20_000));
    expect(await p.exited).toBe(0);
    return line as Record<string, number>;
  }
  const stream = async (size: number) => (await load('stream', size)).bytes;
  const rr = async () => (await load('rr', 64)).count;

  /** Votes are cast when the app's socket reaches TCP_CLOSE, a moment after the client exits. */
  async function votesSettle(pred: (c: Record<string, number>) => boolean): Promise<Record<string, number>> {
    for (let i = 0; i < 100; i++) {
      const c = (await status()).counters;
      if (pred(c)) return c;
      await new Promise((r) => setTimeout(r, slow(50)));
    }
    return (await status()).counters;
  }

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [SVC], []);
    const server = mesh.topo.spawn(smload, ['server', SVC, '9100', '9101'], { netns: 'remote', cgroup: 'outside', label: 'smload server' });
    await server.waitFor((l) => l.event === 'ready');
    const config = mesh.writeConfig(`
autoSplice: { segmentBytes: 256, minSegments: 64, votes: 2 }
services: [{ name: rpc, addresses: [${SVC}], ports: [9100, 9101] }]
`);
    const r = await runCli(['up', '--cgroup', mesh.cgroup, '--config', config, '--instance', instance]);
    expect(r.stderr).toBe('');
  });

  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  it('starts unspliced, splices after small-message connections vote for it, and stops after bulk streams vote against', async () => {
    expect(await auto()).toEqual({ votes: 0, connections: 0, splicing: false });
    const c0 = (await status()).counters;
    // Each exchange is one 64 B segment each way: far more than minSegments, far below segmentBytes.
    for (let i = 0; i < 2; i++) expect(await rr()).toBeGreaterThan(32);
    const c1 = await votesSettle((c) => c.autoVotesFor - c0.autoVotesFor >= 2);
    expect(c1.autoVotesFor - c0.autoVotesFor).toBe(2);
    expect(c1.sockmapInserts).toBe(c0.sockmapInserts); // nothing spliced while learning
    expect(await auto()).toMatchObject({ votes: 2, splicing: true });

    // The next connection (not the every-8th probe) is spliced, and its data arrives whole.
    expect(await stream(1024)).toBeGreaterThan(0);
    const c2 = (await status()).counters;
    expect(c2.sockmapInserts - c1.sockmapInserts).toBe(2);
    expect(c2.sockmapRedirects).toBeGreaterThan(c1.sockmapRedirects);

    // Bulk writes make big segments: unspliced probes vote against until splicing stops.
    for (let i = 0; i < 24 && (await auto()).splicing; i++) {
      const before = (await status()).counters;
      await stream(65536);
      await votesSettle((c) => c.autoVotesAgainst + c.autoVotesFor > before.autoVotesAgainst + before.autoVotesFor || c.sockmapInserts > before.sockmapInserts);
    }
    const c3 = (await status()).counters;
    expect(c3.autoVotesAgainst - c2.autoVotesAgainst).toBeGreaterThanOrEqual(1);
    expect((await auto()).splicing).toBe(false);
    await stream(65536);
    expect((await status()).counters.sockmapInserts).toBe(c3.sockmapInserts);
  });
});
