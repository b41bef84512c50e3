// Agent restarts under traffic (the lifecycle issue): 20 restarts — SIGTERM and kill -9, some of
// them while the agent applies a 10,000-service config — while 3 long-lived captured connections
// (two spliced, one not) carry sequence-numbered lines through the pod's sidecar. Nothing may
// reset or reorder, every start must capture new connections, and the last start must converge
// on the whole config (its last service reaches the sidecar).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Line, Proc } from '../../src/topology/proc.js';
import { MeshedNode } from '../helpers/meshed-node.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const PEER = 'dist/src/topology/peer.js';
const FILLER = 10_000;
const fillerAddr = (i: number) => `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;

privileged('agent restarts under streaming traffic', () => {
  const instance = uniqueName('r');
  let t: MeshedNode;
  let agent: Proc | undefined;

  const config = (filler: number) => {
    const lines = [
      'services:',
      '  - { name: spliced, addresses: [10.96.0.30], ports: [9080], splice: always }',
      '  - { name: plain, addresses: [10.96.0.31], ports: [9080], splice: never }',
      '  - { name: probe, addresses: [10.96.0.32], ports: [9080] }',
    ];
    for (let i = 0; i < filler; i++) lines.push(`  - { name: s${i}, addresses: [${fillerAddr(i)}], ports: [8080] }`);
    lines.push('pods:', `  - { name: pod-a, cgroup: a, netns: ${t.netns('a')} }`);
    return `${lines.join('\n')}\n`;
  };
  const save = (text: string) => t.save(text);
  const spawnAgent = () => t.spawnAgent();
  const ask = (host: string, port = 9080) => t.ask('a', host, port);

  beforeAll(async () => {
    t = await MeshedNode.create(instance, ['a']);
    save(config(0));
  });

  afterAll(() => t?.close());

  it('20 restarts (SIGTERM, kill -9, some mid-apply of 10,000 services): no reset, every line in order, capture after each start, converged', async () => {
    // How long a start with 10,000 services takes here, to kill later starts part-way through.
    save(config(FILLER));
    const t0 = performance.now();
    agent = spawnAgent();
    await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
    const bigStartMs = performance.now() - t0;
    await agent.kill();
    save(config(0));
    agent = spawnAgent();
    await agent.waitFor((l) => l.msg === 'agent ready', slow(30_000));

    // Three long-lived connections through the sidecar: two spliced, one through the stack.
    const hosts = ['10.96.0.30', '10.96.0.30', '10.96.0.31'];
    const streams = hosts.map((h, i) => t.node.spawnNode('a', PEER, ['ask', '--host', h, '--port', '9080'], `stream ${i}`));
    await Promise.all(streams.map((s) => s.waitFor((l) => l.event === 'connected', slow(10_000))));
    const sent: string[][] = hosts.map(() => []);
    let seq = 0;
    const pump = setInterval(() => {
      streams.forEach((s, i) => {
        const line = `c${i}-${seq}`;
        sent[i].push(line);
        s.send(line);
      });
      seq++;
    }, 5);

    const outcomes: string[] = [];
    try {
      for (let r = 0; r < 20; r++) {
        const midApply = r % 5 === 2; // 4 of the 20: killed while applying 10,000 services
        if (midApply) save(config(FILLER));
        else if (r % 5 === 3) save(config(0)); // and the start after it shrinks the config again
        // Stop the running agent: SIGTERM (it leaves the data path) or kill -9.
        if (r % 2 === 0) {
          agent.child.kill('SIGKILL');
        } else {
          agent.child.kill('SIGTERM');
        }
        await agent.exited;
        agent = spawnAgent();
        if (midApply) {
          // Killed part-way through its start: the later part of a start is the parse and the
          // writes into the maps (the first part is Node starting and loading).
          await new Promise((res) => setTimeout(res, bigStartMs * [0.55, 0.7, 0.85, 0.95][(r - 2) / 5]));
          agent.child.kill('SIGKILL');
          await agent.exited;
          outcomes.push(`start ${r}: killed mid-apply`);
          agent = spawnAgent();
        }
        await agent.waitFor((l: Line) => l.msg === 'agent ready', slow(60_000));
        const reply = await ask('10.96.0.32');
        expect(reply, `start ${r}`).toMatchObject({ server: 'sidecar-a', origDst: { address: '10.96.0.32', port: 9080 } });
        outcomes.push(`start ${r}: captured`);
      }
    } finally {
      clearInterval(pump);
    }

    // Every line came back, in order, from the sidecar, on the connection it was sent on.
    await Promise.all(streams.map((s, i) => s.waitFor(() => s.lines.filter((l) => l.event === 'reply').length >= sent[i].length, slow(30_000))));
    streams.forEach((s, i) => {
      expect(s.lines.filter((l) => l.event === 'error'), `stream ${i}`).toEqual([]);
      const replies = s.lines.filter((l) => l.event === 'reply').map((l) => l.reply as { server: string; line: string; origDst: { address: string } });
      expect(replies.map((x) => x.line), `stream ${i}`).toEqual(sent[i]);
      expect(new Set(replies.map((x) => `${x.server} ${x.origDst.address}`)), `stream ${i}`).toEqual(new Set([`sidecar-a ${hosts[i]}`]));
    });
    expect(seq).toBeGreaterThan(100);
    for (const s of streams) s.child.stdin!.end();

    // Converged: the whole 10,000-service config, its last service included.
    const seen = agent.lines.length;
    save(config(FILLER));
    const applied = await agent.waitForFrom(seen, (l) => l.msg === 'reconciled', slow(30_000));
    expect(applied.changes).toMatchObject({ sm_services: { put: FILLER, del: 0 } });
    expect(await ask(fillerAddr(FILLER - 1), 8080)).toMatchObject({ server: 'sidecar-a', origDst: { address: fillerAddr(FILLER - 1), port: 8080 } });
    expect(outcomes.filter((o) => o.endsWith('captured'))).toHaveLength(20);
  });
});
