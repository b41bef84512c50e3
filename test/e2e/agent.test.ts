// The node agent end to end, through the real CLI, kernel, namespaces and cgroups: it meshes the
// pods of its config file, follows edits (rename-on-save, invalid edits, a deleted file), takes
// service switches over its control socket as overrides kept across restarts, serves /metrics
// (parsed with a Prometheus text-format parser) and leaves the data path running when stopped.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OverrideStore } from '../../src/instance/overrides.js';
import { pinRoot } from '../../src/bpf/bpffs.js';
import type { NodeTopology } from '../../src/topology/node.js';
import type { Line, Proc } from '../../src/topology/proc.js';
import { cliJson, runCli } from '../helpers/cli.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { MeshedNode } from '../helpers/meshed-node.js';
import { slow } from '../helpers/slow.js';

interface Family { name: string; type: string; metrics: Array<{ labels?: Record<string, string>; value?: string; buckets?: Record<string, string> }> }

privileged('node agent', () => {
  const instance = uniqueName('g');
  let t: MeshedNode;
  let node: NodeTopology;
  let cfgPath: string;
  let agent: Proc | undefined;
  let port = 0;

  const config = (reviewsRedirect: boolean, extra = '') => `
services:
  - { name: reviews, addresses: [10.96.0.20], ports: [9080], redirect: ${reviewsRedirect} }
  - { name: ratings, addresses: [10.96.0.21], ports: [9080], splice: always }
  - { name: details, addresses: [10.96.0.22], ports: [9080], mode: kernel, endpoints: ['127.0.0.11'] }
pods:
  - { name: pod-a, cgroup: a, netns: ${node.pod('a').netns} }
  - { name: pod-b, cgroup: b, netns: ${node.pod('b').netns} }
${extra}`;

  /** Writes the config the way editors save: a new file renamed onto the path. */
  const save = (text: string) => t.save(text);

  async function startAgent(extra: string[] = []): Promise<Proc> {
    const p = await t.startAgent(extra);
    port = t.port;
    return p;
  }

  /** Waits for the next log line matching after the current count. */
  function nextLog(p: Proc, pred: (l: Line) => boolean): Promise<Line> {
    return p.waitForFrom(p.lines.length, pred, slow(10_000));
  }

  const ask = (pod: string, host: string) => t.ask(pod, host);

  async function metrics(): Promise<Family[]> {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    return parsePrometheusTextFormat(await res.text()) as Family[];
  }

  const value = (fams: Family[], name: string, labels: Record<string, string> = {}) => {
    const f = fams.find((x) => x.name === name);
    const m = f?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
    return m ? Number(m.value) : 0;
  };

  beforeAll(async () => {
    t = await MeshedNode.create(instance, ['a', 'b']);
    ({ node, cfgPath } = t);
    save(config(true));
    agent = await startAgent();
  });

  afterAll(() => t?.close());

  it('meshes every pod of the file and is ready', async () => {
    expect(await ask('a', '10.96.0.20')).toMatchObject({ server: 'sidecar-a', origDst: { address: '10.96.0.20', port: 9080 } });
    expect(await ask('b', '10.96.0.21')).toMatchObject({ server: 'sidecar-b', origDst: { address: '10.96.0.21', port: 9080 } });
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  });

  it('runs with its memory settings in the process that was started (restarted in place, same pid)', () => {
    const cmdline = readFileSync(`/proc/${agent!.pid}/cmdline`, 'utf8').split('\0');
    const environ = readFileSync(`/proc/${agent!.pid}/environ`, 'utf8').split('\0');
    expect(cmdline).toContain('--max-semi-space-size=1');
    expect(cmdline).toContain('agent');
    expect(environ).toContain('SOCKMESH_AGENT_TUNED=1');
    expect(environ).toContain('MALLOC_ARENA_MAX=2');
  });

  it('keeps its pins and record readable by root only, and answers root-only requests to root only', () => {
    const mode = (p: string) => statSync(p).mode & 0o777;
    expect(mode(pinRoot(instance))).toBe(0o700);
    expect(mode(`/run/sockmesh/${instance}.json`)).toBe(0o600);
    // Any uid may connect (a pod's `sockmesh wait`); the agent checks who asks, from the socket.
    expect(mode(`/run/sockmesh/${instance}.sock`)).toBe(0o666);
    expect(mode('/run/sockmesh')).toBe(0o711);
    const ask = (line: string) => spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e',
      `const s=require('net').connect(process.argv[1]);s.on('connect',()=>s.write(process.argv[2]+'\\n'));s.pipe(process.stdout)`, `/run/sockmesh/${instance}.sock`, line], { encoding: 'utf8' });
    for (const req of [{ op: 'status' }, { op: 'service', name: 'reviews', redirect: false }, { op: 'reset', name: 'reviews' }]) {
      const r = JSON.parse(ask(JSON.stringify(req)).stdout) as { ok: boolean; error: { code: string; message: string } };
      expect(r, req.op).toMatchObject({ ok: false, error: { code: 'SOCKMESH_E_FORBIDDEN', message: `op ${req.op} needs root; it was asked by uid 65534` } });
    }
  });

  it('applies a valid edit saved by rename, and logs one line with what changed', async () => {
    const logged = nextLog(agent!, (l) => l.msg === 'reconciled');
    save(config(false));
    const line = await logged;
    expect(line.changes).toMatchObject({ sm_svc_state: { put: 1, del: 0 } });
    expect(String((await ask('a', '10.96.0.20')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
    expect(await ask('a', '10.96.0.21')).toMatchObject({ server: 'sidecar-a' });
  });

  it('rejects an invalid edit whole, naming every field, and keeps the last good state', async () => {
    const before = await cliJson<{ slot: number; services: Array<{ name: string; redirect: boolean }> }>(['status', '--instance', instance]);
    const logged = nextLog(agent!, (l) => l.msg === 'config rejected; the last good state stays applied');
    save(config(true).replace('ports: [9080], redirect', 'ports: [70000], redirect').replace('splice: always', 'splice: sometimes'));
    const line = await logged;
    expect((line.issues as Array<{ path: string }>).map((i) => i.path)).toEqual(['services[0].ports[0]', 'services[1].splice']);
    const after = await cliJson<typeof before & { agent: { source: { stale: boolean } } }>(['status', '--instance', instance]);
    expect(after.slot).toBe(before.slot);
    expect(after.services).toEqual(before.services);
    expect(after.agent.source.stale).toBe(true);
    expect(value(await metrics(), 'sockmesh_config_rejections_total')).toBeGreaterThanOrEqual(1);
    expect(value(await metrics(), 'sockmesh_config_source_stale')).toBe(1);
    // Not ready while stale (as /readyz says), and no sidecar refuses a version here.
    expect(value(await metrics(), 'sockmesh_agent_ready')).toBe(0);
    expect(value(await metrics(), 'sockmesh_sidecars_refusing_policy')).toBe(0);
    expect(String((await ask('a', '10.96.0.20')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
  });

  it('keeps the last good state when the file is deleted, and says so', async () => {
    const logged = nextLog(agent!, (l) => /is gone; the last good state stays applied/.test(String(l.msg)));
    rmSync(cfgPath);
    await logged;
    expect(await ask('b', '10.96.0.21')).toMatchObject({ server: 'sidecar-b' });
    const back = nextLog(agent!, (l) => l.msg === 'reconciled');
    save(config(true));
    await back;
    expect(await ask('a', '10.96.0.20')).toMatchObject({ server: 'sidecar-a' });
    expect(value(await metrics(), 'sockmesh_config_source_stale')).toBe(0);
    expect(value(await metrics(), 'sockmesh_agent_ready')).toBe(1);
  });

  it('takes a service switch over the control socket as an override, kept across restarts until reset', async () => {
    const r = await cliJson<{ changed: boolean; override: boolean }>(['service', 'disable', 'reviews', '--instance', instance]);
    expect(r).toMatchObject({ changed: true, override: true });
    expect(String((await ask('a', '10.96.0.20')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
    const st = await runCli(['status', '--instance', instance]);
    expect(st.stdout).toMatch(/reviews .* off \(override\)/);
    // Unknown services and malformed requests are refused.
    const unknown = await runCli(['service', 'disable', 'nope', '--instance', instance]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no service "nope" in the config/);

    // SIGTERM: the agent goes, capture stays (the pinned programs keep working without it).
    await agent!.kill();
    expect(existsSync(pinRoot(instance))).toBe(true);
    expect(await ask('b', '10.96.0.21')).toMatchObject({ server: 'sidecar-b' });
    agent = await startAgent();
    expect(String((await ask('a', '10.96.0.20')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
    const reset = await cliJson<{ hadOverride: boolean; changed: boolean }>(['service', 'reset', 'reviews', '--instance', instance]);
    expect(reset).toMatchObject({ hadOverride: true, changed: true });
    expect(await ask('a', '10.96.0.20')).toMatchObject({ server: 'sidecar-a' });
  });

  it('serves /metrics as Prometheus text whose counters move with traffic', async () => {
    const before = await metrics();
    const rw = (f: Family[]) => value(f, 'sockmesh_pod_events_total', { pod: 'pod-b', event: 'connectRewrites' });
    const captured = (f: Family[]) => value(f, 'sockmesh_service_connections_total', { service: 'ratings', outcome: 'captured' });
    for (let i = 0; i < 3; i++) expect(await ask('b', '10.96.0.21')).toMatchObject({ server: 'sidecar-b' });
    const after = await metrics();
    expect(rw(after) - rw(before)).toBe(3);
    expect(captured(after) - captured(before)).toBe(3);
    expect(value(after, 'sockmesh_map_entries', { map: 'pods' })).toBe(2);
    // Kernel mode: connections per endpoint (nothing listens there: each connect is refused after the choice).
    const toEndpoint = (f: Family[]) => value(f, 'sockmesh_endpoint_connections_total', { service: 'details', endpoint: '127.0.0.11' });
    for (let i = 0; i < 2; i++) await node.spawn('b', 'bash', ['-c', 'exec 3<>/dev/tcp/10.96.0.22/9080'], 'kernel-mode connect').exited;
    expect(toEndpoint(await metrics()) - toEndpoint(after)).toBe(2);
    expect(value(after, 'sockmesh_map_capacity', { map: 'services' })).toBe(65536);
    expect(after.find((f) => f.name === 'sockmesh_reconcile_duration_seconds')?.type).toBe('HISTOGRAM');
    expect(after.find((f) => f.name === 'sockmesh_build_info')?.metrics[0].labels?.version).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('refuses a second agent, and up or down, for the instance it runs', async () => {
    const r = await runCli(['agent', '--config', cfgPath, '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/held by another sockmesh agent or command/);
    for (const args of [['down'], ['up', '--cgroup', node.parent, '--config', cfgPath]]) {
      const c = await runCli([...args, '--instance', instance]);
      expect(c.code).toBe(2);
      expect(c.stderr).toMatch(/a sockmesh agent runs instance/);
    }
    expect(existsSync(pinRoot(instance))).toBe(true);
  });

  it('removes everything on exit with --cleanup-on-exit', async () => {
    await agent!.kill();
    agent = await startAgent(['--cleanup-on-exit']);
    await agent.kill();
    agent = undefined;
    expect(existsSync(pinRoot(instance))).toBe(false);
    expect(existsSync(OverrideStore.forInstance(instance).path)).toBe(false);
    expect(String((await ask('b', '10.96.0.21')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
  });
}, ['bpftool', 'ip']);
