// The node agent against a careless operator and a hostile config (issue "faults and hostile
// input, round two"), through the real CLI, kernel, namespaces and cgroups. Each case used to lose
// capture silently, hang the agent or leave state behind; each checks what the kernel does.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pinRoot } from '../../src/bpf/bpffs.js';
import { MeshedNode } from '../helpers/meshed-node.js';
import { cliJson, runCli } from '../helpers/cli.js';
import { CLI, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';
import { attached } from '../helpers/state.js';

const SERVICES = `services:
  - { name: reviews, addresses: [10.96.0.20], ports: [9080] }
  - { name: ratings, addresses: [10.96.0.21], ports: [9080] }
  - { name: constructor, addresses: [10.96.0.23], ports: [9080] }
capture: { includeInboundPorts: [] }
`;

interface AgentStatus { agent: { unresolvedPods: Array<{ pod: string; path: string; message: string }>; source: { stale: boolean } }; pods: Array<{ name: string }> }

const captured = (pod: string, addr: string) => ({ server: `sidecar-${pod}`, origDst: { address: addr, port: 9080 } });
const unreachable = /ENETUNREACH|EHOSTUNREACH/;

privileged('node agent: hostile config and careless operators', () => {
  let t: MeshedNode;
  const pods = (extra = '') => `pods:
  - { name: pod-a, cgroup: a, netns: ${t.netns('a')} }
  - { name: pod-b, cgroup: b, netns: ${t.netns('b')} }
${extra}`;
  const status = () => cliJson<AgentStatus>(['status', '--instance', t.instance]);

  beforeAll(async () => {
    t = await MeshedNode.create(uniqueName('ah'), ['a', 'b']);
    t.save(SERVICES + pods());
    await t.startAgent();
  });

  /** Cgroups a case made below the node's parent (removed before the node). */
  const made: string[] = [];

  afterAll(async () => {
    await t?.stopAgent();
    for (const cg of made.reverse()) rmdirSync(cg);
    await t?.close();
  });

  it('keeps a service named `constructor` captured while another service has an override', async () => {
    expect((await runCli(['service', 'disable', 'ratings', '--instance', t.instance])).code).toBe(0);
    try {
      expect(await t.ask('a', '10.96.0.23')).toMatchObject(captured('a', '10.96.0.23'));
      expect(String((await t.ask('a', '10.96.0.21')).error)).toMatch(unreachable);
      const e = await cliJson<{ verdict: string; service: { redirect: boolean; redirectFrom: string } }>(['explain', '--instance', t.instance, '--pod', 'pod-a', '10.96.0.21:9080']);
      // The switch in effect, and where it comes from (the override, not the file's redirect: true).
      expect(e).toMatchObject({ verdict: 'direct', service: { redirect: false, redirectFrom: 'override' } });
    } finally {
      expect((await runCli(['service', 'reset', 'ratings', '--instance', t.instance])).code).toBe(0);
    }
    expect(await t.ask('a', '10.96.0.21')).toMatchObject(captured('a', '10.96.0.21'));
  });

  it('refuses two pods that spell one namespace or one cgroup differently, naming the field, and keeps the last good state', async () => {
    for (const [extra, path] of [
      [`  - { name: pod-c, cgroup: c, netns: /var/run/netns/${t.netns('a')} }`, 'pods[2].netns'],
      [`  - { name: pod-c, cgroup: ./a/, netns: /var/run/netns/${t.netns('b')}x }`, 'pods[2].cgroup'],
    ]) {
      const rejected = t.nextLog((l) => l.msg === 'config rejected; the last good state stays applied');
      t.save(SERVICES + pods(extra));
      expect(((await rejected).issues as Array<{ path: string }>).map((i) => i.path)).toContain(path);
      expect(await t.ask('a', '10.96.0.20')).toMatchObject(captured('a', '10.96.0.20'));
    }
    const back = t.nextLog((l) => l.msg === 'reconciled');
    t.save(SERVICES + pods());
    await back;
  });

  it('refuses a pod whose namespace is another pod\'s by another path, and never lets it replace the first pod\'s entry', async () => {
    const sidecarA = t.node.procs.find((p) => p.label === 'sidecar a')!;
    await t.node.addPod('c');
    const applied = t.nextLog((l) => l.msg === 'reconciled' || l.msg === 'config rejected; the last good state stays applied');
    t.save(SERVICES + pods(`  - { name: pod-c, cgroup: c, netns: /proc/${sidecarA.pid}/ns/net }`));
    await applied;
    const st = await status();
    expect(st.pods.map((p) => p.name).sort()).toEqual(['pod-a', 'pod-b']);
    expect(st.agent.unresolvedPods.find((p) => p.pod === 'pod-c')?.message).toMatch(/pods\[2\]\.netns: .* is the same network namespace as that of pods\[0\] \(pod-a\)/);
    expect(await t.ask('a', '10.96.0.20')).toMatchObject(captured('a', '10.96.0.20'));
    const e = await runCli(['explain', '--instance', t.instance, '--pod', 'pod-c', '10.96.0.20:9080']);
    expect(e.stderr).toMatch(/pod "pod-c" is listed but not meshed/);
    expect(await t.metric('sockmesh_pods_unresolved')).toBe(1);
  });

  it('never blocks on a pod namespace that is a FIFO: /healthz, the control socket and edits keep working', async () => {
    const fifo = join(t.dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    mkdirSync(join(t.node.parent, 'f'));
    made.push(join(t.node.parent, 'f'));
    t.save(SERVICES + pods(`  - { name: pod-f, cgroup: f, netns: ${fifo} }`));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    expect((await fetch(`http://127.0.0.1:${t.port}/healthz`)).status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(1000);
    const edited = t.nextLog((l) => l.msg === 'reconciled');
    t.save(SERVICES.replace('ports: [9080] }\n  - { name: ratings', 'ports: [9080], redirect: false }\n  - { name: ratings') + pods(`  - { name: pod-f, cgroup: f, netns: ${fifo} }`));
    await edited;
    expect(String((await t.ask('b', '10.96.0.20')).error)).toMatch(unreachable);
    const st = await status();
    expect(st.agent.unresolvedPods.find((p) => p.pod === 'pod-f')?.message).toMatch(/is not a network namespace \(it is a FIFO\)/);
  });

  it('refuses an edit that cuts the pod list (the whole --cgroup would become one pod)', async () => {
    const rejected = t.nextLog((l) => l.msg === 'config rejected; the last good state stays applied');
    t.save(SERVICES);
    const line = await rejected;
    expect((line.issues as Array<{ path: string; message: string }>)[0]).toMatchObject({ path: 'pods', message: expect.stringMatching(/lists no pods, the applied one lists 3/) });
    expect(await t.ask('a', '10.96.0.21')).toMatchObject(captured('a', '10.96.0.21'));
    expect(await t.metric('sockmesh_config_source_stale')).toBe(1);
    const back = t.nextLog((l) => l.msg === 'reconciled');
    t.save(SERVICES + pods());
    await back;
  });

  it('restarts with a listed pod missing: the others are meshed, the missing one counted', async () => {
    t.save(SERVICES + pods('  - { name: pod-m, cgroup: m, netns: sm-nowhere-m }'));
    await new Promise((r) => setTimeout(r, 200));
    await t.stopAgent();
    await t.startAgent();
    expect(await t.ask('a', '10.96.0.20')).toMatchObject(captured('a', '10.96.0.20'));
    expect(await t.metric('sockmesh_pods_unresolved')).toBe(1);
  });

  it('meshes a pod that appears later before its app sends a byte when the app starts through `sockmesh wait`', async () => {
    t.save(SERVICES + pods(`  - { name: pod-d, cgroup: d, netns: sm-${t.instance}-d }`));
    await new Promise((r) => setTimeout(r, 200));
    expect(await t.metric('sockmesh_pods_unresolved')).toBe(1); // pod-d is listed and not there yet
    await t.node.addPod('d');
    const sidecar = await t.sidecar('d');
    // The app's first step: wait, then 60 new connections one after another, from its first moment.
    const app = t.node.spawn('d', process.execPath, [CLI, 'wait', '--instance', t.instance, '--timeout', '20s', '--', process.execPath, PEER, 'repeat', '--host', '10.96.0.20', '--port', '9080', '--count', '60'], 'app d');
    const summary = await app.waitFor((l) => l.event === 'summary', slow(30_000));
    expect(summary.errors).toEqual([]);
    expect(summary.outcomes).toEqual({ 'sidecar-d 10.96.0.20:9080': 60 });
    expect(await app.exited).toBe(0);
    expect(sidecar.pid).toBeGreaterThan(0);
    expect(await t.metric('sockmesh_pods_unresolved')).toBe(0);
  });

  it('`sockmesh wait` in a cgroup no pod lists gives up, saying why, and runs nothing', async () => {
    await t.node.addPod('e');
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      const p = t.node.spawn('e', process.execPath, [CLI, 'wait', '--instance', t.instance, '--timeout', '1s', '--', 'sh', '-c', 'echo RAN'], 'wait e');
      void p.exited.then((code) => resolve({ code, out: `${p.lines.map((l) => JSON.stringify(l)).join('\n')}\n${p.stderr}` }));
    });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/not meshed after 1s: no meshed pod of instance .* has the caller's cgroup and network namespace/);
    expect(r.out).not.toMatch(/RAN/);
  });

  it('keeps a switch made while the agent is stopped as its override, and the next start keeps it', async () => {
    await t.stopAgent();
    const off = await runCli(['service', 'disable', 'ratings', '--instance', t.instance]);
    expect(off.code, off.stderr).toBe(0);
    expect(off.stdout).toMatch(/not running: kept as its override, which it applies when it starts/);
    expect(String((await t.ask('a', '10.96.0.21')).error)).toMatch(unreachable);
    await t.startAgent();
    expect(String((await t.ask('a', '10.96.0.21')).error)).toMatch(unreachable);
    // Reset while it is stopped: the file's switch again, at once and after the next start.
    await t.stopAgent();
    const reset = await runCli(['service', 'reset', 'ratings', '--instance', t.instance]);
    expect(reset.code, reset.stderr).toBe(0);
    expect(await t.ask('a', '10.96.0.21')).toMatchObject(captured('a', '10.96.0.21'));
    await t.startAgent();
    expect(await t.ask('a', '10.96.0.21')).toMatchObject(captured('a', '10.96.0.21'));
  });

  it('a fresh start whose --listen is in use exits with what to change and leaves nothing attached or pinned', async () => {
    const server: Server = await new Promise((resolve) => { const s = createServer(); s.listen(0, '127.0.0.1', () => resolve(s)); });
    const port = (server.address() as { port: number }).port;
    const instance = uniqueName('al');
    const cg = `${t.node.parent}-l`;
    mkdirSync(cg);
    try {
      const r = spawnSync(process.execPath, [CLI, 'agent', '--config', t.cfgPath, '--cgroup', cg, '--instance', instance, '--listen', `127.0.0.1:${port}`], { encoding: 'utf8' });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`--listen 127\\.0\\.0\\.1:${port}: the address is in use .*pick another with --listen`));
      expect(r.stderr).not.toMatch(/internal error|    at /);
      expect(existsSync(pinRoot(instance))).toBe(false);
      expect(attached(cg).trim()).toBe('');
      expect(existsSync(`/run/sockmesh/${instance}.json`)).toBe(false);
    } finally {
      server.close();
      await runCli(['down', '--instance', instance]);
      rmdirSync(cg);
    }
  });
}, ['bpftool', 'ip', 'mkfifo']);

privileged('node agent: inbound listeners across an edit that replaces a pod', () => {
  // pod-x never had an inbound listener; one edit replaces it with pod-y, whose sidecar listened
  // before (the agent registers it). pod-y takes pod-x's freed id: removing pod-x's listener slot,
  // which is empty, used to fail (EINVAL) and abort the inbound sync, so pod-y's inbound
  // connections were refused until some unrelated later edit.
  let t: MeshedNode;
  const X = '10.201.0.42';
  const Y = '10.201.0.43';
  const config = (second: 'x' | 'y') => `services: []
pods:
  - { name: pod-a, cgroup: a, netns: ${t.netns('a')} }
  - { name: pod-${second}, cgroup: ${second}, netns: ${t.netns(second)} }
`;

  beforeAll(async () => {
    t = await MeshedNode.create(uniqueName('ai'), [['a', '10.201.0.41'], ['x', X], ['y', Y], ['out', '10.201.0.44']], { sidecars: ['a', 'x'] });
    const procs = [
      t.node.spawnNode('y', CLI, ['sidecar', '--uid', '1337', '--log-connections'], 'real sidecar y'),
      t.node.spawnNode('y', PEER, ['serve', '--host', '0.0.0.0', '--port', '9080', '--name', 'app-y'], 'app y'),
    ];
    await Promise.all(procs.map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
    t.save(config('x'));
    await t.startAgent();
  });

  afterAll(async () => {
    await t?.close();
  });

  it('hands pod-y\'s inbound connections to its sidecar right after the edit, and logs nothing as failed', async () => {
    const applied = t.nextLog((l) => l.msg === 'reconciled');
    t.save(config('y'));
    await applied;
    await new Promise((r) => setTimeout(r, 300));
    expect(t.agent!.lines.filter((l) => /inbound capture of a pod failed/.test(String(l.msg)))).toEqual([]);
    const r = await t.ask('out', Y, 9080);
    expect(r).toMatchObject({ server: 'app-y', local: `${Y}:9080` });
    expect(String(r.peer)).toMatch(/^127\.0\.0\.6:/); // through pod-y's sidecar
  });
}, ['bpftool', 'ip']);

privileged('node agent: the agent\'s own network namespace is never a pod\'s', () => {
  // The agent runs in a namespace of this test's (nsenter keeps the host's mounts), so what the old
  // code did there (attach sk_lookup to the agent's own namespace, which then refuses every
  // connection it would hand to a sidecar) cannot reach the host.
  let t: MeshedNode;
  const own = `sm-${uniqueName('own')}`;
  let ownCgroup = '';

  beforeAll(async () => {
    t = await MeshedNode.create(uniqueName('ao'), ['a']);
    execFileSync('ip', ['netns', 'add', own]);
    execFileSync('ip', ['-n', own, 'link', 'set', 'lo', 'up']);
    ownCgroup = join(t.node.parent, 'own');
    mkdirSync(ownCgroup);
    t.save(`${SERVICES.replace('capture: { includeInboundPorts: [] }\n', '')}pods:
  - { name: pod-a, cgroup: a, netns: ${t.netns('a')} }
  - { name: pod-own, cgroup: own, netns: /proc/self/ns/net }
`);
  });

  afterAll(async () => {
    for (const a of [t?.agent]) await a?.kill(10_000);
    await runCli(['down', '--instance', t.instance]);
    if (ownCgroup) rmdirSync(ownCgroup);
    await t?.close();
    spawnSync('ip', ['netns', 'del', own]);
  });

  it('refuses /proc/self/ns/net as a pod\'s namespace, attaches nothing there, and meshes the other pods', async () => {
    const agent = t.spawnAgent([], ['nsenter', `--net=/var/run/netns/${own}`]);
    t.agent = agent;
    await agent.waitFor((l) => l.msg === 'agent ready', slow(30_000));
    const warn = agent.lines.find((l) => l.pod === 'pod-own');
    expect(String(warn?.error)).toMatch(/\/proc\/self\/ns\/net is sockmesh's own network namespace: sockmesh never meshes it/);
    // sk_lookup links: pod-a's namespace only, none in the agent's own.
    const ino = (path: string) => execFileSync('stat', ['-L', '-c', '%i', path], { encoding: 'utf8' }).trim();
    const links = execFileSync('bpftool', ['link', 'show'], { encoding: 'utf8' });
    expect(links).toMatch(new RegExp(`netns_ino ${ino(`/var/run/netns/${t.netns('a')}`)}\\b`));
    expect(links).not.toMatch(new RegExp(`netns_ino ${ino(`/var/run/netns/${own}`)}\\b`));
    expect(await t.ask('a', '10.96.0.20')).toMatchObject(captured('a', '10.96.0.20'));
  });
}, ['bpftool', 'ip', 'nsenter']);
