// The governance sidecar end to end (issue 14), in both capture modes, on real sockets in private
// namespaces: HAProxy rendered from the config's policy balances over the endpoints, hides a dead
// endpoint with retries, ejects a failing one and takes it back once it recovers, answers 504 past
// the timeout, rate-limits the inbound side at the configured rate, writes one JSON access line per
// request, propagates (or starts) W3C trace context, exports its metrics in Prometheus text, and
// takes ten policy versions under continuous load without one failed request.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Proc } from '../../src/topology/proc.js';
import { POD_IP } from '../../src/topology/topology.js';
import { runCli } from '../helpers/cli.js';
import { CLI, Mesh, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const EP = { a: '10.0.0.11', b: '10.0.0.12', slow: '10.0.0.13', dead: '10.0.0.14' };
const RPS = 40;

function policy(version: number, ratingsEndpoints = `[${EP.a}:9080, ${EP.b}:9080]`, slowTimeout = '300ms'): string {
  return `# policy version ${version}
services:
  - name: ratings
    addresses: [10.96.0.30]
    ports: [9080]
    protocol: http
    endpoints: ${ratingsEndpoints}
    policy:
      loadBalancer: ROUND_ROBIN
      timeout: 1s
      retries: { attempts: 2, retryOn: 'connect-failure,5xx' }
      outlierDetection: { consecutive5xxErrors: 3, interval: 200ms, baseEjectionTime: 300ms }
  - name: dead
    addresses: [10.96.0.31]
    ports: [9080]
    protocol: http
    endpoints: [${EP.a}:9080, ${EP.dead}:9080]
    policy: { retries: { attempts: 2, retryOn: connect-failure } }
  - { name: slow, addresses: [10.96.0.32], ports: [9080], protocol: http, endpoints: ['${EP.slow}:9080'], policy: { timeout: ${slowTimeout} } }
  - name: front
    addresses: [10.96.0.40]
    ports: [9090]
    protocol: http
    endpoints: ['${POD_IP}:9090']
    policy: { rateLimit: { requestsPerSecond: ${RPS}, burst: 0 } }
capture: { includeInboundPorts: [9090] }
`;
}

for (const mode of ['ebpf', 'iptables'] as const) {
  privileged(`governance sidecar (HAProxy), ${mode} capture`, () => {
    const instance = uniqueName('g');
    let mesh: Mesh;
    let sidecar: Proc;
    let cfgPath: string;
    const servers: Record<string, Proc> = {};

    beforeAll(async () => {
      mesh = await Mesh.create(instance, Object.values(EP), [], { sidecar: false });
      for (const [name, addr] of Object.entries(EP)) {
        if (name === 'dead') continue;
        servers[name] = mesh.topo.spawnNode(PEER, ['http-serve', '--host', addr, '--port', '9080', '--name', name], { netns: 'remote', cgroup: 'outside', label: `endpoint ${name}` });
      }
      servers.app = mesh.topo.spawnNode(PEER, ['http-serve', '--host', '0.0.0.0', '--port', '9090', '--name', 'app'], { cgroup: 'mesh', label: 'app' });
      await Promise.all(Object.values(servers).map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
      servers.slow.send('delay 2000');
      cfgPath = join(mesh.dir, 'mesh.yaml');
      writeFileSync(cfgPath, policy(1));
      sidecar = mesh.topo.spawnNode(CLI, ['sidecar', '--config', cfgPath, '--run-dir', join(mesh.dir, 'run'), '--metrics-listen', '127.0.0.1:15020'], { cgroup: 'mesh', label: 'governance sidecar' });
      await sidecar.waitFor((l) => l.event === 'ready', slow(30_000));
      const where = mode === 'ebpf' ? ['--cgroup', mesh.cgroup, '--netns', mesh.netns] : ['--netns', mesh.netns];
      const r = await runCli(['up', '--mode', mode, ...where, '--config', cfgPath, '--instance', instance]);
      expect(r.stderr).toBe('');
    });

    afterAll(async () => {
      await runCli(['down', '--instance', instance]);
      await mesh?.close();
    });

    /** Requests from the pod's app (or a peer outside the mesh); the load's summary line. */
    async function load(host: string, port: number, count: number, opts: { from?: 'pod' | 'peer'; header?: string; concurrency?: number } = {}) {
      const p = mesh.topo.spawnNode(PEER, ['http-load', '--host', host, '--port', String(port), '--count', String(count), '--concurrency', String(opts.concurrency ?? 1),
        ...(opts.header ? ['--header', opts.header] : [])], { cgroup: opts.from === 'peer' ? 'outside' : 'mesh', netns: opts.from === 'peer' ? 'remote' : 'pod', label: `load ${host}` });
      const done = await p.waitFor((l) => l.event === 'done', slow(60_000));
      return { done, responses: p.lines.filter((l) => l.event === 'response') };
    }

    const access = () => sidecar.lines.filter((l) => l.event === 'access');

    it('balances requests over the endpoints round robin, one JSON access line each, trace context started', async () => {
      const before = access().length;
      const { done, responses } = await load('10.96.0.30', 9080, 20);
      expect(done).toMatchObject({ requests: 20, failures: 0, statuses: { 200: 20 }, servers: { a: 10, b: 10 } });
      for (const r of responses) expect(r.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      await sidecar.waitFor(() => access().length >= before + 20, slow(10_000));
      const lines = access().slice(before).filter((l) => l.service === 'ratings');
      expect(lines).toHaveLength(20);
      expect(lines[0]).toMatchObject({ direction: 'outbound', method: 'GET', path: expect.stringMatching(/^\/r\d+$/), status: 200, bytes: expect.any(Number), duration_ms: expect.any(Number) });
      expect(new Set(lines.map((l) => l.upstream))).toEqual(new Set([`${EP.a}:9080`, `${EP.b}:9080`]));
      // The trace id the endpoint saw is the one logged.
      expect(lines.map((l) => l.trace_id).sort()).toEqual(responses.map((r) => String(r.traceparent).split('-')[1]).sort());
    });

    it('keeps a trace context the client sent', async () => {
      const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      const { responses } = await load('10.96.0.30', 9080, 2, { header: `traceparent: ${tp}` });
      expect(responses.map((r) => r.traceparent)).toEqual([tp, tp]);
    });

    it('hides a dead endpoint with retries', async () => {
      const { done } = await load('10.96.0.31', 9080, 20);
      expect(done).toMatchObject({ failures: 0, statuses: { 200: 20 }, servers: { a: 20 } });
    });

    it('answers 504 when the endpoint is slower than the timeout', async () => {
      const { done } = await load('10.96.0.32', 9080, 2);
      expect(done).toMatchObject({ statuses: { 504: 2 } });
    });

    it('ejects a failing endpoint (retries hide its errors) and takes it back once it recovers', async () => {
      servers.b.send('status 500');
      await servers.b.waitFor((l) => l.event === 'set' && l.status === 500, slow(5000));
      const failing = await load('10.96.0.30', 9080, 20);
      expect(failing.done).toMatchObject({ failures: 0, statuses: { 200: 20 } });
      // Ejected: the last requests all went to a.
      expect(failing.responses.slice(-10).map((r) => r.server)).toEqual(Array(10).fill('a'));
      servers.b.send('status 200');
      await servers.b.waitFor((l) => l.event === 'set' && l.status === 200, slow(5000));
      // Back after the check sees it answer again (interval 200ms, ejection 300ms).
      let back = false;
      for (let i = 0; i < 50 && !back; i++) {
        const { done } = await load('10.96.0.30', 9080, 4);
        back = (done.servers as Record<string, number>).b > 0;
        if (!back) await new Promise((r) => setTimeout(r, 100));
      }
      expect(back).toBe(true);
    });

    it('rate-limits the inbound side: 429 beyond the configured rate, counted over a bounded run', async () => {
      const t0 = Date.now();
      const { done } = await load(POD_IP, 9090, 400, { from: 'peer', concurrency: 4 });
      const seconds = (Date.now() - t0) / 1000;
      const statuses = done.statuses as Record<string, number>;
      expect((statuses[200] ?? 0) + (statuses[429] ?? 0)).toBe(400);
      expect(statuses[429]).toBeGreaterThan(0);
      // A sliding one-second window: at most RPS in any second, so about RPS per second of the run
      // (plus the first window's), within ±20 %.
      const expected = RPS * Math.max(1, seconds);
      expect(statuses[200]).toBeGreaterThanOrEqual(Math.floor(RPS * 0.8));
      expect(statuses[200]).toBeLessThanOrEqual(Math.ceil((expected + RPS) * 1.2));
      // Every refusal has its access line (they arrive a moment after the responses).
      const refusedLines = () => access().filter((l) => l.direction === 'inbound' && l.service === 'front' && l.status === 429).length;
      await sidecar.waitFor(() => refusedLines() >= statuses[429], slow(10_000));
      expect(refusedLines()).toBe(statuses[429]);
    });

    it('exports per-service, per-endpoint requests and duration histograms as Prometheus text', () => {
      const text = execFileSync('ip', ['netns', 'exec', mesh.netns, process.execPath, '-e',
        "fetch('http://127.0.0.1:15020/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"], { encoding: 'utf8' });
      const families = parsePrometheusTextFormat(text) as Array<{ name: string; type: string; metrics: Array<{ labels?: Record<string, string>; value?: string; buckets?: Record<string, string> }> }>;
      const requests = families.find((f) => f.name === 'sockmesh_sidecar_requests_total')!;
      expect(requests.type).toBe('COUNTER');
      const ratings = requests.metrics.filter((m) => m.labels?.service === 'ratings' && m.labels.code === '200');
      expect(new Set(ratings.map((m) => m.labels!.endpoint))).toEqual(new Set([`${EP.a}:9080`, `${EP.b}:9080`]));
      const hist = families.find((f) => f.name === 'sockmesh_sidecar_request_duration_seconds')!;
      expect(hist.type).toBe('HISTOGRAM');
      expect(Object.keys(hist.metrics[0].buckets!).length).toBeGreaterThan(5);
      expect(families.find((f) => f.name === 'sockmesh_sidecar_policy_version')!.metrics[0].value).toBe('1');
    });

    it('takes ten policy versions under continuous load: no failed request, each version in effect', async () => {
      const loadProc = mesh.topo.spawnNode(PEER, ['http-load', '--host', '10.96.0.30', '--port', '9080', '--count', '0', '--concurrency', '2'], { cgroup: 'mesh', label: 'continuous load' });
      await loadProc.waitFor((l) => l.event === 'response', slow(10_000));
      for (let v = 2; v <= 11; v++) {
        const only = v % 2 ? 'a' : 'b';
        writeFileSync(cfgPath, policy(v, `[${only === 'a' ? EP.a : EP.b}:9080]`));
        await sidecar.waitFor((l) => l.event === 'policy-applied' && l.version === v, slow(20_000));
        // Endpoints only: the runtime API, no reload.
        expect(sidecar.lines.find((l) => l.event === 'policy' && l.version === v)).toMatchObject({ via: 'runtime' });
        // In effect: a new client is served by the only endpoint of this version.
        const { done } = await load('10.96.0.30', 9080, 3);
        expect(done.servers, `version ${v}`).toEqual({ [only]: 3 });
      }
      loadProc.child.stdin!.end();
      const summary = await loadProc.waitFor((l) => l.event === 'done', slow(20_000));
      expect(summary.requests).toBeGreaterThan(20);
      // (on failure, the first failed responses say what went wrong)
      expect(summary, JSON.stringify(loadProc.lines.filter((l) => l.event === 'response' && ((l.status as number) >= 500 || l.status === 0)).slice(0, 5))).toMatchObject({ failures: 0 });
    });

    it('applies a change beyond endpoints with a seamless reload, and refuses a bad version (the last good one keeps serving)', async () => {
      writeFileSync(cfgPath, policy(12, `[${EP.a}:9080]`, '10s'));
      await sidecar.waitFor((l) => l.event === 'policy-applied' && l.version === 12, slow(20_000));
      expect(sidecar.lines.find((l) => l.event === 'policy' && l.version === 12)).toMatchObject({ via: 'reload' });
      // The slow endpoint (2 s) is now well within the timeout.
      expect((await load('10.96.0.32', 9080, 1)).done).toMatchObject({ statuses: { 200: 1 } });
      writeFileSync(cfgPath, policy(13).replace('attempts: 2', 'attempts: 99'));
      const refused = await sidecar.waitFor((l) => l.event === 'policy-refused', slow(20_000));
      expect(refused).toMatchObject({ version: 12, error: expect.stringMatching(/retries\.attempts/) });
      // Files written in place (truncated, then written) were never caught half-written: this is the only refusal.
      expect(sidecar.lines.filter((l) => l.event === 'policy-refused')).toHaveLength(1);
      expect((await load('10.96.0.30', 9080, 4)).done).toMatchObject({ failures: 0, servers: { a: 4 } });
    });
  });
}

privileged('governance sidecar following its agent (--instance)', () => {
  const instance = uniqueName('ga');
  let mesh: Mesh;
  let agent: Proc | undefined;
  let sidecar: Proc;
  let agentCfg: string;
  const cfg = (ep: string) => `services:
  - { name: ratings, addresses: [10.96.0.30], ports: [9080], protocol: http, endpoints: ['${ep}:9080'], policy: { retries: { attempts: 1 } } }
capture: { includeInboundPorts: [] }
`;

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [EP.a, EP.b], [], { sidecar: false });
    const eps = ['a', 'b'].map((name) => mesh.topo.spawnNode(PEER, ['http-serve', '--host', EP[name as 'a' | 'b'], '--port', '9080', '--name', name], { netns: 'remote', cgroup: 'outside', label: `endpoint ${name}` }));
    await Promise.all(eps.map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
    agentCfg = join(mesh.dir, 'agent.yaml');
    writeFileSync(agentCfg, cfg(EP.a));
    // The agent runs on the node (the host's namespaces), as its DaemonSet does.
    agent = new Proc('agent', process.execPath, [CLI, 'agent', '--config', agentCfg, '--cgroup', mesh.cgroup, '--instance', instance, '--listen', '127.0.0.1:0']);
    await agent.waitFor((l) => l.msg === 'agent ready', slow(30_000));
    // The sidecar's own file says b; the agent says a.
    const fileCfg = join(mesh.dir, 'file.yaml');
    writeFileSync(fileCfg, cfg(EP.b));
    sidecar = mesh.topo.spawnNode(CLI, ['sidecar', '--config', fileCfg, '--instance', instance, '--id', 'pod-x', '--run-dir', join(mesh.dir, 'run'), '--metrics-listen', ''], { cgroup: 'mesh', label: 'governance sidecar' });
    await sidecar.waitFor((l) => l.event === 'ready', slow(30_000));
  });

  afterAll(async () => {
    await agent?.kill();
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  async function servedBy(): Promise<Record<string, number>> {
    const p = mesh.topo.spawnNode(PEER, ['http-load', '--host', '10.96.0.30', '--port', '9080', '--count', '4'], { cgroup: 'mesh', label: 'load' });
    return (await p.waitFor((l) => l.event === 'done', slow(30_000))).servers as Record<string, number>;
  }

  it('takes the agent\'s policy over its file, and each new version the agent applies', async () => {
    await sidecar.waitFor((l) => l.event === 'policy-applied' && sidecar.lines.some((x) => x.event === 'policy' && x.from === 'agent'), slow(20_000));
    expect(await servedBy()).toEqual({ a: 4 });
    writeFileSync(agentCfg, cfg(EP.b));
    await sidecar.waitFor(() => sidecar.lines.filter((x) => x.event === 'policy' && x.from === 'agent').length >= 2, slow(20_000));
    await sidecar.waitFor(() => sidecar.lines.filter((x) => x.event === 'policy-applied').length >= 2, slow(20_000));
    expect(await servedBy()).toEqual({ b: 4 });
  });

  it('is in the agent\'s status with the version it runs', async () => {
    const st = JSON.parse((await runCli(['status', '--instance', instance, '--json'])).stdout) as { agent: { policyVersion: number; sidecars: Array<{ id: string; agentVersion: number }> } };
    expect(st.agent.policyVersion).toBe(2);
    // It asks again at once with what it has: the agent knows it runs version 2.
    expect(st.agent.sidecars).toEqual([expect.objectContaining({ id: 'pod-x', agentVersion: 2 })]);
  });

  it('a sidecar that refused the agent\'s version is not sent it again: its poll waits for the next one', async () => {
    const [{ request }, { socketPath }] = await Promise.all([import('../../src/control/client.js'), import('../../src/control/protocol.js')]);
    // This agent run's epoch (the version numbers are its own), from a first answer.
    const { epoch } = await request(socketPath(instance), { op: 'policy', have: 0, sidecar: { id: 'probe', version: 1 } }, 40_000) as { epoch: string };
    const ask = (refused: number) => request(socketPath(instance), { op: 'policy', have: 1, epoch, sidecar: { id: 'probe', version: 1, refused } }, 40_000) as Promise<{ version: number; config?: unknown }>;
    const answer = ask(2);
    let answered = false;
    void answer.then(() => { answered = true; });
    await new Promise((r) => setTimeout(r, 500));
    expect(answered).toBe(false); // version 2 is the agent's newest, and this sidecar refused it
    writeFileSync(agentCfg, cfg(EP.a));
    const next = await answer;
    expect(next.version).toBe(3);
    expect(next.config).toBeDefined();
    const st = JSON.parse((await runCli(['status', '--instance', instance, '--json'])).stdout) as { agent: { sidecars: Array<{ id: string; refused?: number }> } };
    expect(st.agent.sidecars.find((x) => x.id === 'probe')).toMatchObject({ refused: 2 });
    // The real sidecar follows to version 3 (endpoint a again).
    await sidecar.waitFor(() => sidecar.lines.filter((x) => x.event === 'policy' && x.from === 'agent').length >= 3, slow(20_000));
    await sidecar.waitFor(() => sidecar.lines.filter((x) => x.event === 'policy-applied').length >= 3, slow(20_000));
    expect(await servedBy()).toEqual({ a: 4 });
  });

  it('keeps serving the last good version while the agent is away', async () => {
    // The agent stops at once on SIGTERM, though the sidecar's long poll was waiting on it.
    const t0 = Date.now();
    agent!.child.kill('SIGTERM');
    expect(await agent!.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(slow(10_000));
    agent = undefined;
    await sidecar.waitFor((l) => l.event === 'agent' && l.reachable === false, slow(60_000));
    expect(await servedBy()).toEqual({ a: 4 });
  });
});
