// splice: auto learns per service from closed connections: tiny TCP_NODELAY writes (per-packet
// stack cost dominates) vote for splicing, bulk writes vote against; new connections follow the vote.
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

  /** One smload stream connection through the mesh; returns the bytes the sink confirmed. */
  async function stream(size: number): Promise<number> {
    const p = mesh.topo.spawn(smload, ['stream', SVC, '9101', String(size), '0.2'], { cgroup: 'mesh', label: `stream ${size}` });
    const line = await p.waitFor((l) => l.test === 'stream', slow(20_000));
    expect(await p.exited).toBe(0);
    return line.bytes as number;
  }

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
services: [{ name: stream, addresses: [${SVC}], ports: [9101] }]
`);
    const r = await runCli(['up', '--cgroup', mesh.cgroup, '--config', config, '--instance', instance]);
    expect(r.stderr).toBe('');
  });

  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  it('starts unspliced, splices after tiny-write streams vote for it, and stops after bulk streams vote against', async () => {
    expect(await auto()).toEqual({ votes: 0, connections: 0, splicing: false });
    const c0 = (await status()).counters;
    for (let i = 0; i < 2; i++) expect(await stream(64)).toBeGreaterThan(0);
    const c1 = await votesSettle((c) => c.autoVotesFor - c0.autoVotesFor >= 2);
    expect(c1.autoVotesFor - c0.autoVotesFor).toBe(2);
    expect(c1.sockmapInserts).toBe(c0.sockmapInserts); // nothing spliced while learning
    expect(await auto()).toMatchObject({ votes: 2, splicing: true });

    // The next connection (not the every-8th probe) is spliced, and its data arrives whole.
    expect(await stream(64)).toBeGreaterThan(0);
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
