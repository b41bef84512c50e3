// The governance sidecar under faults (issue "faults and hostile input, round two"): SIGTERM with a
// request in flight, its HAProxy worker killed, a tab inside a header, the sidecar paused under
// load. Real HAProxy, real capture (eBPF), real sockets in private namespaces.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { CLI, Mesh, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const EP = '10.0.0.21';
const CONFIG = `services:
  - { name: ratings, addresses: [10.96.0.30], ports: [9080], protocol: http, endpoints: ['${EP}:9080'], policy: { timeout: 5s } }
capture: { includeInboundPorts: [] }
`;

privileged('governance sidecar under faults', () => {
  const instance = uniqueName('gh');
  let mesh: Mesh;
  let endpoint: Proc;
  let sidecar: Proc | undefined;
  let cfgPath = '';
  let accessLog = '';

  async function startSidecar(): Promise<Proc> {
    const p = mesh.topo.spawnNode(CLI, ['sidecar', '--config', cfgPath, '--run-dir', join(mesh.dir, 'run'), '--metrics-listen', '127.0.0.1:15020', '--access-log', accessLog],
      { cgroup: 'mesh', label: 'governance sidecar' });
    await p.waitFor((l) => l.event === 'ready', slow(30_000));
    sidecar = p;
    return p;
  }

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [EP], [], { sidecar: false });
    endpoint = mesh.topo.spawnNode(PEER, ['http-serve', '--host', EP, '--port', '9080', '--name', 'ep'], { netns: 'remote', cgroup: 'outside', label: 'endpoint' });
    await endpoint.waitFor((l) => l.event === 'ready', slow(30_000));
    cfgPath = join(mesh.dir, 'mesh.yaml');
    accessLog = join(mesh.dir, 'access.jsonl');
    writeFileSync(cfgPath, CONFIG);
    await startSidecar();
    const r = await runCli(['up', '--cgroup', mesh.cgroup, '--netns', mesh.netns, '--config', cfgPath, '--instance', instance]);
    expect(r.stderr).toBe('');
  });

  afterAll(async () => {
    await sidecar?.kill(15_000);
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  const load = (count: number, concurrency: number, header?: string) => mesh.topo.spawnNode(PEER,
    ['http-load', '--host', '10.96.0.30', '--port', '9080', '--count', String(count), '--concurrency', String(concurrency), ...(header ? ['--header', header] : [])],
    { cgroup: 'mesh', label: `http-load ${count}` });
  const records = () => readFileSync(accessLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { trace_id: string | null; path: string });
  /** A metric of the sidecar's /metrics, which listens in the pod's namespace. */
  async function metric(name: string): Promise<number> {
    const r = await mesh.topo.exec(process.execPath, ['-e', "fetch('http://127.0.0.1:15020/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(r.stdout)?.[1] ?? NaN);
  }

  it('SIGTERM lets a request in flight finish (HAProxy\'s soft stop), then exits 0', async () => {
    endpoint.send('delay 1500');
    try {
      const req = load(1, 1);
      await new Promise((r) => setTimeout(r, 400)); // the request is at the endpoint now
      const exited = sidecar!.exited;
      sidecar!.child.kill('SIGTERM');
      const done = await req.waitFor((l) => l.event === 'done', slow(10_000));
      expect(done).toMatchObject({ requests: 1, failures: 0, statuses: { 200: 1 } });
      expect(await exited).toBe(0);
    } finally {
      endpoint.send('delay 0');
    }
    await startSidecar();
  });

  it('a killed HAProxy worker is started again, counted, and requests succeed again', async () => {
    const master = Number(sidecar!.lines.find((l) => l.event === 'ready')!.haproxyPid);
    const worker = Number(readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(' ')[0]);
    expect(worker).toBeGreaterThan(0);
    const seen = sidecar!.lines.length;
    process.kill(worker, 'SIGKILL');
    await sidecar!.waitForFrom(seen, (l) => l.event === 'haproxy-restarted', slow(15_000));
    expect(sidecar!.lines.slice(seen).find((l) => l.event === 'haproxy-exited')).toBeDefined();
    const done = await load(20, 2).waitFor((l) => l.event === 'done', slow(20_000));
    expect(done).toMatchObject({ requests: 20, failures: 0 });
    expect(await metric('sockmesh_sidecar_haproxy_restarts_total')).toBe(1);
    expect(await metric('sockmesh_sidecar_haproxy_up')).toBe(1);
  });

  it('logs a request whose traceparent holds a tab, with the header as it came', async () => {
    const before = records().length;
    const done = await load(5, 1, 'traceparent:00-4bf92f35\t77b34da6-01').waitFor((l) => l.event === 'done', slow(20_000));
    expect(done).toMatchObject({ requests: 5, failures: 0 });
    await waitUntil(() => records().length >= before + 5);
    const mine = records().slice(before);
    expect(mine).toHaveLength(5);
    for (const r of mine) expect(r.trace_id).toBe('4bf92f35\t77b34da6');
  });

  it('paused under load, every request is in the access log or in the dropped-lines count', async () => {
    const before = records().length;
    const droppedBefore = await metric('sockmesh_sidecar_access_log_dropped_total');
    const node = Number(sidecar!.pid);
    const l = load(3000, 8);
    await new Promise((r) => setTimeout(r, 200));
    process.kill(node, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 3000));
    process.kill(node, 'SIGCONT');
    const done = await l.waitFor((x) => x.event === 'done', slow(60_000));
    expect(done).toMatchObject({ requests: 3000, failures: 0 });
    await new Promise((r) => setTimeout(r, 1500)); // the backlog is read and DroppedLogs polled
    const logged = records().length - before;
    const dropped = (await metric('sockmesh_sidecar_access_log_dropped_total')) - droppedBefore;
    expect(logged + dropped).toBe(3000);
  }, slow(120_000));
}, ['bpftool', 'ip', 'haproxy']);

async function waitUntil(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + slow(ms);
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
