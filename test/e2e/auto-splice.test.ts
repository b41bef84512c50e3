// splice: auto decides per connection at establishment (bpf/include/splice.h): a service whose
// last connection was a bulk stream stays on the stack; else TCP_NODELAY on as the app's socket
// connects -> spliced; Nagle on -> spliced only when the service's last such socket had turned
// TCP_NODELAY on by its close (Go, Node), else left to TCP, which coalesces its writes. Each
// branch is checked through the kernel's counters, never through timing; `always` and `never`
// stay explicit overrides.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status as instanceStatus } from '../../src/instance/status.js';
import { packageRoot } from '../../src/util/paths.js';
import { runCli } from '../helpers/cli.js';
import { Mesh, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const SVC = '10.96.0.20';
/** One smload server per splice mode: echo port, sink port. */
const PORTS = { auto: [9100, 9101], always: [9110, 9111], never: [9120, 9121] } as const;
type Splice = keyof typeof PORTS;

privileged('splice: auto', () => {
  const instance = uniqueName('a');
  let mesh: Mesh;
  const smload = join(packageRoot(), 'dist', 'smload');
  // In-process: a CLI start costs seconds under emulation (VM lane).
  const counters = async () => (await instanceStatus(instance)).counters;

  /** One smload connection through the mesh; returns its result line. */
  async function load(splice: Splice, test: 'rr' | 'stream' | 'nagle', size: number): Promise<Record<string, number>> {
    const port = PORTS[splice][test === 'rr' ? 0 : 1];
    const p = mesh.topo.spawn(smload, [test, SVC, String(port), String(size), String(slow(300) / 1000)], { cgroup: 'mesh', label: `${test} ${size}` });
    const line = await p.waitFor((l) => l.test === test, slow(20_000));
    expect(await p.exited).toBe(0);
    return line as Record<string, number>;
  }

  /** What one connection changed in the counters (read after its sockets have been counted). */
  async function delta(run: () => Promise<unknown>): Promise<Record<string, number>> {
    const before = await counters();
    await run();
    const after = await counters();
    return Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
  }

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [SVC], [], { sidecar: true });
    for (const [mode, [echo, sink]] of Object.entries(PORTS)) {
      const server = mesh.topo.spawn(smload, ['server', SVC, String(echo), String(sink)], { netns: 'remote', cgroup: 'outside', label: `smload ${mode}` });
      await server.waitFor((l) => l.event === 'ready');
    }
    const service = (splice: Splice) => `{ name: ${splice}, addresses: [${SVC}], ports: [${PORTS[splice].join(', ')}], splice: ${splice} }`;
    const config = mesh.writeConfig(`services:\n${(Object.keys(PORTS) as Splice[]).map((s) => `  - ${service(s)}`).join('\n')}\n`);
    const r = await runCli(['up', '--cgroup', mesh.cgroup, '--config', config, '--instance', instance]);
    expect(r.stderr).toBe('');
  });

  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  /** A Node client streaming to the echo port of a service (TCP_NODELAY: Node sets it after connecting, as Go does). */
  async function nodeStream(splice: Splice, args: string[]): Promise<Record<string, unknown>> {
    const p = mesh.topo.spawnNode(PEER, ['stream', '--host', SVC, '--port', String(PORTS[splice][0]), ...args], { cgroup: 'mesh', label: `stream ${args.join(' ')}` });
    const done = await p.waitFor((l) => l.event === 'done' || l.event === 'error', slow(60_000));
    expect(await p.exited).toBe(0);
    expect(done.event).toBe('done');
    expect(done.echoed).toBe(done.sent); // every byte came back, in order
    return done;
  }

  type Learned = { nagleClients: string; bulk: boolean; observed: number };
  /** What splice: auto has learned about the auto service, once `n` closes have told it. */
  async function learned(n: number): Promise<Learned> {
    const read = async () => (await instanceStatus(instance)).services.find((s) => s.name === 'auto')!.auto!;
    let a = await read();
    // The app's socket reports at TCP_CLOSE, a moment after the client exits.
    for (let i = 0; i < 200 && a.observed < n; i++) {
      await new Promise((r) => setTimeout(r, slow(25)));
      a = await read();
    }
    return a;
  }
  const GO_STYLE = ['--nodelay', 'after', '--bytes', String(256 * 1024), '--chunk', '512']; // < 1 MiB: never bulk

  // One scenario, in order: what the service has learned carries from one step to the next.
  describe('auto', () => {
    it('splices a socket that had TCP_NODELAY on when it connected', async () => {
      let result: Record<string, number> = {};
      const d = await delta(async () => { result = await load('auto', 'stream', 64); });
      expect(result.messages).toBeGreaterThan(100);
      expect(d.sockmapInserts).toBe(2); // the app's socket and the sidecar's
      expect(d.autoStackConnects).toBe(0);
      expect(d.msgNagleSender).toBe(0);
      expect(d.sockmapRedirects).toBeGreaterThan(0);
      expect(await learned(1)).toEqual({ nagleClients: 'unknown', bulk: false, observed: 1 });
    });

    it('splices request/response both ways', async () => {
      let result: Record<string, number> = {};
      const d = await delta(async () => { result = await load('auto', 'rr', 64); });
      expect(d.sockmapInserts).toBe(2);
      expect(d.msgNagleSender).toBe(0);
      // One message each way per exchange; some may wait for the stack (order, full queue).
      expect(d.sockmapRedirects + d.msgOrderHolds + d.msgReceiverFull).toBeGreaterThanOrEqual(2 * result.count);
      expect(d.sockmapRedirects).toBeGreaterThan(result.count);
      expect(await learned(2)).toMatchObject({ bulk: false, observed: 2 });
    });

    it('leaves a Nagle sender to TCP, which coalesces its small writes, and learns that it stayed so', async () => {
      let result: Record<string, number> = {};
      const d = await delta(async () => { result = await load('auto', 'nagle', 64); });
      expect(result.messages).toBeGreaterThan(100);
      expect(d.autoStackConnects).toBe(1);
      expect(d.sockmapInserts).toBe(0);
      expect(d.sockmapRedirects + d.msgNagleSender).toBe(0);
      expect(await learned(3)).toMatchObject({ nagleClients: 'stay-nagle', observed: 3 });
    });

    it('learns from a client that turns TCP_NODELAY on right after connecting (Go, Node) and splices the next one', async () => {
      const first = await delta(() => nodeStream('auto', GO_STYLE));
      expect(first.autoStackConnects).toBe(1); // what it learned so far: such clients stay Nagle
      expect(first.sockmapInserts).toBe(0);
      expect(await learned(4)).toEqual({ nagleClients: 'turn-nodelay', bulk: false, observed: 4 });
      const next = await delta(() => nodeStream('auto', GO_STYLE));
      expect(next.autoStackConnects).toBe(0);
      expect(next.sockmapInserts).toBe(2);
      expect(next.sockmapRedirects).toBeGreaterThan(0);
      expect(next.msgNagleSender).toBe(0);
      expect(await learned(5)).toEqual({ nagleClients: 'turn-nodelay', bulk: false, observed: 5 });
    });

    it('keeps the byte stream whole while a spliced sender flips TCP_NODELAY mid-connection', async () => {
      const d = await delta(() => nodeStream('auto', ['--nodelay', 'after', '--bytes', String(4 << 20), '--chunk', '512', '--toggle-nodelay', '256']));
      expect(d.sockmapInserts).toBe(2);
      expect(d.msgNagleSender).toBeGreaterThan(0); // its Nagle stretches took the stack
      expect(d.sockmapRedirects).toBeGreaterThan(0); // its TCP_NODELAY stretches and the echo were spliced
      // It closed with Nagle on (31 flips): the service's next Nagle-at-connect client stays on the stack.
      expect(await learned(6)).toMatchObject({ nagleClients: 'stay-nagle', observed: 6 });
      const d2 = await delta(() => load('auto', 'nagle', 1024));
      expect(d2.autoStackConnects).toBe(1);
      expect(d2.sockmapInserts).toBe(0);
      expect(await learned(7)).toMatchObject({ nagleClients: 'stay-nagle', observed: 7 });
    });

    it('corrects itself when a Nagle sender joins on what Go-style clients taught', async () => {
      await nodeStream('auto', GO_STYLE);
      expect(await learned(8)).toEqual({ nagleClients: 'turn-nodelay', bulk: false, observed: 8 });
      const joined = await delta(() => load('auto', 'nagle', 64));
      expect(joined.sockmapInserts).toBe(2);
      expect(joined.msgNagleSender).toBeGreaterThan(0); // each of its writes still took the stack
      // The one spliced message: the sink's 8-byte total, written back by the sidecar (TCP_NODELAY).
      expect(joined.sockmapRedirects).toBe(1);
      expect(await learned(9)).toMatchObject({ nagleClients: 'stay-nagle', observed: 9 });
      const next = await delta(() => load('auto', 'nagle', 64));
      expect(next.autoStackConnects).toBe(1);
      expect(next.sockmapInserts).toBe(0);
      await learned(10);
    });

    it('keeps the next connections of a bulk service on the stack until one that is not bulk', async () => {
      // 64 KiB writes through the stack (Nagle: not spliced): MiBs in segments of tens of KiB.
      await load('auto', 'nagle', 65536);
      expect(await learned(11)).toMatchObject({ bulk: true, observed: 11 });
      // Even TCP_NODELAY at connect stays on the stack now; its small exchanges lift it.
      const lifted = await delta(() => load('auto', 'rr', 64));
      expect(lifted.autoStackConnects).toBe(1);
      expect(lifted.sockmapInserts).toBe(0);
      expect(await learned(12)).toMatchObject({ bulk: false, observed: 12 });
      const next = await delta(() => load('auto', 'stream', 64));
      expect(next.sockmapInserts).toBe(2);
      await learned(13);
    });
  });

  it('splice: always splices a Nagle sender too', async () => {
    const d = await delta(() => load('always', 'nagle', 64));
    expect(d.sockmapInserts).toBe(2);
    expect(d.msgNagleSender).toBe(0);
    expect(d.sockmapRedirects).toBeGreaterThan(0);
  });

  it('splice: never keeps every socket out of the sockhash', async () => {
    const d = await delta(() => load('never', 'stream', 64));
    expect(d.connectRewrites).toBe(1);
    expect(d.sockmapInserts).toBe(0);
    expect(d.sockmapRedirects + d.msgNagleSender).toBe(0);
  });

  it('status and explain say what auto does', async () => {
    const st = await runCli(['status', '--instance', instance]);
    expect(st.stdout).toMatch(/^auto .* auto \(Nagle-at-connect clients: stay-nagle\)$/m);
    expect(st.stdout).toMatch(/AUTO STACK CONNS/);
    const ex = await runCli(['explain', '--instance', instance, '--json', '--uid', '1000', `${SVC}:${PORTS.auto[0]}`]);
    expect(JSON.parse(ex.stdout).splice).toMatch(/^splice: auto: .*This service now: TCP_NODELAY at connect: spliced; Nagle at connect: they keep Nagle on: stays on the stack \(learned from 13 closes\)$/);
  });
});
