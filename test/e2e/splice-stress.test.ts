// The spliced data path under stress: a slow reader must not make a fast writer pin host TCP
// memory (backpressure), and data must arrive complete and in order while sockets switch between
// the sockhash and the stack (order), also with the CPUs saturated by another process.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { status } from '../../src/instance/status.js';
import { SPLICE_QUEUE_DEFAULT } from '../../src/config/constants.js';
import { Topology } from '../../src/topology/topology.js';
import type { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const STRESS = 'dist/src/topology/stress.js';

interface StressResult {
  conns: number;
  bytes: number;
  mismatches: number;
  errors: string[];
  tcpMemBefore: number;
  tcpMemPeak: number;
  tcpMemAfter: number;
}

function sysctlMax(name: string): number {
  return Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim().split(/\s+/)[2]);
}

privileged('spliced data path under stress', () => {
  const instance = uniqueName('s');
  let topo: Topology;
  let isUp = false;

  beforeAll(async () => {
    topo = await Topology.create(instance);
    const cfg = `${process.env.TMPDIR ?? '/tmp'}/sockmesh-${instance}.yaml`;
    const { writeFileSync, rmSync } = await import('node:fs');
    writeFileSync(cfg, 'services:\n  - { name: bulk, addresses: [10.96.0.20], ports: [9080], splice: always }\n');
    try {
      const r = await runCli(['up', '--cgroup', topo.cgroup, '--instance', instance, '--config', cfg]);
      expect(r.stderr).toBe('');
      isUp = true;
    } finally {
      rmSync(cfg, { force: true });
    }
  });

  afterAll(async () => {
    if (isUp) await runCli(['down', '--instance', instance]);
    await topo?.close();
  });

  async function stress(args: string[]): Promise<StressResult> {
    const p = topo.spawnNode(STRESS, args, { cgroup: 'mesh', label: 'stress' });
    const line = await p.waitFor((l) => l.event === 'done', slow(150_000));
    return line as unknown as StressResult;
  }

  it('bounds a fast writer by the slow reader: host TCP memory stays within socket buffers', async () => {
    const before = (await status(instance)).counters;
    const parallel = 4;
    const perConn = 48 * 2 ** 20;
    // Each reader sleeps 1.5 s first: without backpressure every written byte (192 MiB) would
    // sit in the readers' queues; with it, each connection holds at most its socket buffers.
    const r = await stress(['--conns', String(parallel), '--parallel', String(parallel), '--bytes', String(perConn),
      '--max-chunk', String(1 << 20), '--hold-ms', '1500']);
    expect(r.errors).toEqual([]);
    expect(r.mismatches).toBe(0);
    expect(r.bytes).toBe(parallel * perConn);
    const peakBytes = (r.tcpMemPeak - r.tcpMemBefore) * 4096;
    // Per connection: the sender's send buffer, the reader's queue (spliceQueueBytes), one message.
    const bound = parallel * (sysctlMax('tcp_wmem') + SPLICE_QUEUE_DEFAULT + 2 ** 20);
    expect(peakBytes).toBeLessThan(bound);
    expect(peakBytes).toBeLessThan((parallel * perConn) / 4);
    // The memory comes back once the connections are gone.
    expect((r.tcpMemAfter - r.tcpMemBefore) * 4096).toBeLessThan(16 * 2 ** 20);
    const after = (await status(instance)).counters;
    // Both paths were used: redirected while the reader kept up, the stack while it was full.
    expect(after.sockmapRedirects - before.sockmapRedirects).toBeGreaterThan(0);
    expect(after.msgReceiverFull - before.msgReceiverFull).toBeGreaterThan(0);
    expect(after.errors).toBe(0);
  });

  it('keeps every byte in order over 2,000 spliced connections with the CPUs saturated, 5 runs in a row', async () => {
    const burners: Proc[] = [];
    try {
      // Bounded busy loops (they end by themselves after 5 minutes), one per CPU.
      const cpus = Math.max(2, (await import('node:os')).cpus().length);
      for (let i = 0; i < cpus; i++) burners.push(topo.spawn('timeout', ['300', 'sh', '-c', 'while :; do :; done'], { label: `burn${i}` }));
      for (let run = 0; run < 5; run++) {
        const before = (await status(instance)).counters;
        const r = await stress(['--conns', '2000', '--parallel', '32', '--bytes', '65536', '--max-chunk', '4096',
          '--pause-every-ms', '5']);
        expect(r.errors, `run ${run}`).toEqual([]);
        expect(r.conns, `run ${run}`).toBe(2000);
        expect(r.mismatches, `run ${run}`).toBe(0);
        expect(r.bytes, `run ${run}`).toBe(2000 * 65536);
        const after = (await status(instance)).counters;
        expect(after.sockmapInserts - before.sockmapInserts, `run ${run}`).toBe(4000);
        expect(after.sockmapRedirects - before.sockmapRedirects, `run ${run}`).toBeGreaterThan(0);
      }
    } finally {
      await Promise.all(burners.map((b) => b.kill()));
    }
  });
});
