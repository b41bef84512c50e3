// The agent in Kubernetes mode end to end, driven only through a local API server: pods are real
// network namespaces and cgroups laid out as the kubelet lays them out (cgroupfs driver for one
// pod, systemd for the other), with real processes. A pod that appears is captured; its Service
// annotated sockmesh.io/redirect: "false" goes direct for new connections; an API-server outage
// keeps the state and says so; a deleted pod leaves no entry in any map. The agent runs as the
// DaemonSet runs it: its own pid, mount and cgroup namespaces (the host's processes only through
// the host's /proc, mounted read-only), the cgroup2 hierarchy read-only, and root with only the
// capabilities deploy/daemonset.yaml grants. On a kernel without eBPF mode (forced off
// through the probe), the same cluster drives iptables rules in each pod's namespace.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { netnsCookie } from '../../native/netns.js';
import { FakeApiServer, kubeconfigYaml } from '../../src/bench/apiserver.js';
import { podObject, serviceObject } from '../../src/bench/k8s-objects.js';
import { pinLayout } from '../../src/bpf/pins.js';
import { ensureBpffs, pinRoot } from '../../src/bpf/bpffs.js';
import { InstanceMaps } from '../../src/bpf/maps.js';
import { NodeTopology } from '../../src/topology/node.js';
import { Proc, type Line } from '../../src/topology/proc.js';
import { daemonsetLike, stopInNamespace } from '../helpers/capabilities.js';
import { cgroup2Mount } from '../../src/bpf/cgroup.js';
import { runCli } from '../helpers/cli.js';
import { PEER } from '../helpers/mesh.js';
import { askFromPod, routeToRefusingRemote, uidSidecar } from '../helpers/pods.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { natRules } from '../helpers/state.js';
import { slow } from '../helpers/slow.js';

privileged('agent --kubernetes', () => {
  const instance = uniqueName('k');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const hostProc = join(dir, 'host-proc');
  const api = new FakeApiServer({ bookmarkMs: 500 });
  const uidA = randomUUID();
  const uidB = randomUUID();
  let node: NodeTopology;
  let agent: Proc | undefined;
  let port = 0;

  beforeAll(async () => {
    await ensureBpffs(); // the node's own bpffs, as systemd mounts it: the agent's container never mounts one
    await api.start();
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url));
    mkdirSync(hostProc);
    node = await NodeTopology.create(instance, []);
    // The kubelet's layouts below the node's cgroup, each pod's processes in a container cgroup.
    await node.addPod('a', `kubepods/besteffort/pod${uidA}/app`);
    await node.addPod('b', `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uidB.replace(/-/g, '_')}.slice/app`);
    const sidecars = ['a', 'b'].map((p) => node.spawnNode(p, PEER, ['serve', '--host', '127.0.0.1', '--port', '15001', '--name', `sidecar-${p}`, '--mode', 'origdst'], `sidecar ${p}`));
    await Promise.all(sidecars.map((s) => s.waitFor((l) => l.event === 'ready', slow(30_000))));
    api.apply('services', serviceObject({ name: 'reviews', namespace: 'shop', clusterIP: '10.96.0.20', ports: [9080] }));
    api.apply('services', serviceObject({ name: 'ratings', namespace: 'shop', clusterIP: '10.96.0.21', ports: [9080] }));
    api.apply('pods', podObject({ name: 'web', namespace: 'shop', node: 'node-1', uid: uidA, ips: ['10.244.1.5'], istioProxy: true }));
    // Another node's pod: never meshed here.
    api.apply('pods', podObject({ name: 'far', namespace: 'shop', node: 'node-2', ips: ['10.244.2.5'], istioProxy: true }));
    await startAgent();
  });

  /**
   * The agent as the DaemonSet runs it: its own pid, mount and cgroup namespaces, the host's /proc
   * read-only at --proc, the cgroup2 hierarchy read-only, only the DaemonSet's capabilities.
   */
  async function startAgent(): Promise<Line> {
    const [cmd, args] = daemonsetLike(hostProc, cgroup2Mount()!, [process.execPath, 'bin/sockmesh.js', 'agent', '--kubernetes', '--node', 'node-1',
      '--kubeconfig', join(dir, 'kubeconfig'), '--proc', hostProc, '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0']);
    agent = new Proc('agent', cmd, args);
    const ready = await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
    port = Number(String(ready.listen).split(':')[1]);
    return ready;
  }

  afterAll(async () => {
    if (agent) await stopInNamespace(agent);
    await runCli(['down', '--instance', instance]);
    await node?.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function nextLog(pred: (l: Line) => boolean): Promise<Line> {
    return agent!.waitForFrom(agent!.lines.length, pred, slow(15_000));
  }

  async function until(what: string, check: () => boolean): Promise<void> {
    const end = Date.now() + slow(10_000);
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; agent said: ${agent!.lines.slice(-5).map((l) => JSON.stringify(l)).join('\n')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const fam = (parsePrometheusTextFormat(text) as Array<{ name: string; metrics: Array<{ value: string }> }>).find((f) => f.name === name);
    return Number(fam?.metrics[0]?.value);
  }

  it('refuses to start on a node without bpffs rather than mount one that would die with its container', async () => {
    const [cmd, args] = daemonsetLike(hostProc, cgroup2Mount()!, [process.execPath, 'bin/sockmesh.js', 'agent', '--kubernetes', '--node', 'node-1',
      '--kubeconfig', join(dir, 'kubeconfig'), '--proc', hostProc, '--cgroup', node.parent, '--instance', `${instance}x`, '--listen', '127.0.0.1:0'], { noBpffs: true });
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/\/sys\/fs\/bpf is a tmpfs mount: with --kubernetes the node must have bpffs mounted there/);
    expect(existsSync(pinRoot(`${instance}x`))).toBe(false);
  });

  it('meshes the pod the API server lists for this node (cgroupfs layout)', async () => {
    expect(await askFromPod(node, 'a', '10.96.0.20')).toMatchObject({ server: 'sidecar-a', origDst: { address: '10.96.0.20', port: 9080 } });
    // Pod b is not in the API yet: not captured.
    expect(String((await askFromPod(node, 'b', '10.96.0.21')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
    const st = JSON.parse((await runCli(['status', '--instance', instance, '--json'])).stdout);
    expect(st.pods.map((p: { name: string }) => p.name)).toEqual(['web.shop']);
    expect(st.agent.source.path).toMatch(/^kubernetes http:\/\/127\.0\.0\.1:\d+ \(node node-1\)$/);
  });

  it('a pod that appears is captured (systemd layout, meshed by label)', async () => {
    const applied = nextLog((l) => l.msg === 'reconciled');
    api.apply('pods', podObject({ name: 'api', namespace: 'shop', node: 'node-1', uid: uidB, qos: 'Burstable', ips: ['10.244.1.6'], labels: { 'sockmesh.io/mesh': 'enabled' } }));
    await applied;
    expect(await askFromPod(node, 'b', '10.96.0.21')).toMatchObject({ server: 'sidecar-b', origDst: { address: '10.96.0.21', port: 9080 } });
  });

  it('sockmesh.io/redirect: "false" on the Service: new connections go direct; removing it captures again', async () => {
    let applied = nextLog((l) => l.msg === 'reconciled');
    api.apply('services', serviceObject({ name: 'reviews', namespace: 'shop', clusterIP: '10.96.0.20', ports: [9080], annotations: { 'sockmesh.io/redirect': 'false' } }));
    await applied;
    expect(String((await askFromPod(node, 'a', '10.96.0.20')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
    expect(await askFromPod(node, 'a', '10.96.0.21')).toMatchObject({ server: 'sidecar-a' });
    // A malformed edit is refused with an Event; the switch stays off.
    api.apply('services', serviceObject({ name: 'reviews', namespace: 'shop', clusterIP: '10.96.0.20', ports: [9080], annotations: { 'sockmesh.io/redirect': 'no' } }));
    await nextLog((l) => l.msg.startsWith('malformed annotation'));
    await until('the Event', () => api.events.length > 0);
    expect(api.events.at(-1)).toMatchObject({ reason: 'SockmeshInvalidAnnotation', involvedObject: { kind: 'Service', name: 'reviews', namespace: 'shop' } });
    expect(String((await askFromPod(node, 'a', '10.96.0.20')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
    applied = nextLog((l) => l.msg === 'reconciled');
    api.apply('services', serviceObject({ name: 'reviews', namespace: 'shop', clusterIP: '10.96.0.20', ports: [9080] }));
    await applied;
    expect(await askFromPod(node, 'a', '10.96.0.20')).toMatchObject({ server: 'sidecar-a' });
  });

  it('an API-server outage: not ready (it cannot follow the cluster), says the source is stale, keeps capturing; resumes after', async () => {
    await api.down();
    await nextLog((l) => l.msg === 'Kubernetes watch failed; the last good state stays applied');
    await agent!.waitFor((l) => /cannot be reached/.test(String(l.msg)), slow(15_000));
    const notReady = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toMatch(/not ready: the config source is stale .*the last good state stays applied/);
    expect(await metric('sockmesh_config_source_stale')).toBe(1);
    expect(await askFromPod(node, 'a', '10.96.0.20')).toMatchObject({ server: 'sidecar-a' });
    const fresh = nextLog((l) => l.msg === 'source reachable again; what is applied is current');
    await api.start();
    await fresh;
    expect(await metric('sockmesh_config_source_stale')).toBe(0);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  });

  it('a restart while the API server is down: the last applied state stays and keeps capturing; the cluster\'s state follows', async () => {
    await stopInNamespace(agent!);
    await api.down();
    // Changed while both are down: the restarted agent learns it once the API server is back.
    api.apply('services', serviceObject({ name: 'ratings', namespace: 'shop', clusterIP: '10.96.0.21', ports: [9080], annotations: { 'sockmesh.io/redirect': 'false' } }));
    const ready = await startAgent(); // waits 10 s for a first list, then goes on with the record's state
    expect(Number(ready.sinceSourceStartMs)).toBeGreaterThanOrEqual(10_000);
    expect(agent!.lines.some((l) => /no complete list from the API server/.test(String(l.msg)))).toBe(true);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(503);
    expect(await metric('sockmesh_config_source_stale')).toBe(1);
    expect(await askFromPod(node, 'b', '10.96.0.21')).toMatchObject({ server: 'sidecar-b' });
    const applied = nextLog((l) => l.msg === 'reconciled');
    await api.start();
    await applied;
    expect(String((await askFromPod(node, 'b', '10.96.0.21')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
    expect(await metric('sockmesh_config_source_stale')).toBe(0);
  });

  it('a deleted pod leaves no entry in any map', async () => {
    const cookie = netnsCookie(`/var/run/netns/${node.pod('a').netns}`);
    const maps = new InstanceMaps(pinLayout(pinRoot(instance)));
    try {
      const active = () => maps.slots.map((s) => s.pods.entries().find(([k]) => BigInt(k) === cookie)?.[1].podId).find((x) => x !== undefined);
      const podId = active();
      expect(podId).toBeGreaterThan(0);
      const applied = nextLog((l) => l.msg === 'reconciled');
      api.remove('pods', 'shop', 'web');
      await applied;
      // Both slots: the one the programs read at once, the other a moment later.
      const left = () => maps.slots.flatMap((slot) => [
        ...slot.pods.entries().filter(([k, v]) => BigInt(k) === cookie || v.podId === podId),
        ...slot.ports.entries().filter(([k]) => k.podId === podId),
        ...slot.cidrs.entries().filter(([k]) => k.podId === podId),
      ]);
      expect(left().length).toBeGreaterThan(0); // the slot the programs stopped reading, for now
      await until('both slots without the pod', () => left().length === 0);
      expect(maps.sockhash.entries().filter(([k]) => BigInt(k.netns) === cookie)).toEqual([]);
    } finally {
      maps.close();
    }
    // No longer captured; the other pod still is.
    expect(String((await askFromPod(node, 'a', '10.96.0.20')).error)).toMatch(/ENETUNREACH|EHOSTUNREACH/);
    expect(await askFromPod(node, 'b', '10.96.0.20')).toMatchObject({ server: 'sidecar-b' });
  });

  it('a node with no meshed pod left meshes nothing (never the whole kubepods cgroup as one pod)', async () => {
    const applied = nextLog((l) => l.msg === 'reconciled');
    api.remove('pods', 'shop', 'api');
    await applied;
    for (const pod of ['a', 'b']) expect(String((await askFromPod(node, pod, '10.96.0.20')).error), pod).toMatch(/ENETUNREACH|EHOSTUNREACH/);
    const st = JSON.parse((await runCli(['status', '--instance', instance, '--json'])).stdout);
    expect(st.pods).toEqual([]);
  });

  it('another mount namespace is the same view only when it shows the same cgroup and pins', async () => {
    await stopInNamespace(agent!);
    agent = undefined;
    // bpffs hidden under a tmpfs: not the instance's view, refused, nothing removed.
    const hidden = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs none /sys/fs/bpf && exec "$@"', 'sh',
      process.execPath, 'bin/sockmesh.js', 'down', '--instance', instance], { encoding: 'utf8' });
    expect(hidden.status, `${hidden.stdout}\n${hidden.stderr}`).toBe(2);
    expect(hidden.stderr).toMatch(/was made in mount namespace mnt:\[\d+\] and this command runs in mnt:\[\d+\], which may not see its cgroup and pins/);
    expect(existsSync(pinRoot(instance))).toBe(true);
    // The host's own mount namespace shows the same cgroup and pinned maps as the agent's container.
    const down = await runCli(['down', '--instance', instance]);
    expect(down.stderr).toBe('');
    expect(down.code).toBe(0);
    expect(existsSync(pinRoot(instance))).toBe(false);
  });
});

privileged('agent --kubernetes on a kernel without eBPF mode: iptables rules in each pod', () => {
  const instance = uniqueName('q');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const api = new FakeApiServer({ bookmarkMs: 500 });
  const uidA = randomUUID();
  const uidB = randomUUID();
  let node: NodeTopology;
  let agent: Proc | undefined;
  let unroute = () => {};

  beforeAll(async () => {
    await api.start();
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url));
    node = await NodeTopology.create(instance, []);
    await node.addPod('a', `kubepods/besteffort/pod${uidA}/app`);
    await node.addPod('b', `kubepods.slice/kubepods-pod${uidB.replace(/-/g, '_')}.slice/app`);
    unroute = routeToRefusingRemote(node, ['a', 'b']);
    for (const pod of ['a', 'b']) await uidSidecar(node, pod);
    api.apply('services', serviceObject({ name: 'reviews', namespace: 'shop', clusterIP: '10.96.0.20', ports: [9080] }));
    api.apply('pods', podObject({ name: 'web', namespace: 'shop', node: 'node-1', uid: uidA, ips: ['10.250.0.1'], istioProxy: true }));
    await ensureBpffs();
    agent = new Proc('agent', 'env', ['SOCKMESH_PROBE_FAIL=BPF_MAP_TYPE_SOCKHASH', process.execPath, 'bin/sockmesh.js', 'agent', '--kubernetes', '--node', 'node-1',
      '--kubeconfig', join(dir, 'kubeconfig'), '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0']);
    await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
  });

  afterAll(async () => {
    await agent?.kill();
    await runCli(['down', '--instance', instance]);
    await node?.close();
    unroute();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const nextLog = (pred: (l: Line) => boolean) => agent!.waitForFrom(agent!.lines.length, pred, slow(15_000));

  it('meshes the listed pod with rules in its namespace, and a pod that appears (Guaranteed, systemd layout)', async () => {
    expect(agent!.lines.some((l) => typeof l.msg === 'string' && l.msg.includes('running iptables mode for every pod'))).toBe(true);
    expect(await askFromPod(node, 'a', '10.96.0.20')).toMatchObject({ server: 'sidecar-a', origDst: { address: '10.96.0.20', port: 9080 } });
    expect(natRules(node.pod('b').netns)).toEqual([]);
    const applied = nextLog((l) => l.msg === 'reconciled');
    api.apply('pods', podObject({ name: 'api', namespace: 'shop', node: 'node-1', uid: uidB, qos: 'Guaranteed', ips: ['10.250.1.1'], labels: { 'sockmesh.io/mesh': 'enabled' } }));
    await applied;
    expect(await askFromPod(node, 'b', '10.96.0.20')).toMatchObject({ server: 'sidecar-b', origDst: { address: '10.96.0.20', port: 9080 } });
  });

  it('the Service annotation switches every pod\'s rules; a deleted pod\'s rules are removed', async () => {
    let applied = nextLog((l) => l.msg === 'reconciled');
    api.apply('services', serviceObject({ name: 'reviews', namespace: 'shop', clusterIP: '10.96.0.20', ports: [9080], annotations: { 'sockmesh.io/redirect': 'false' } }));
    await applied;
    for (const pod of ['a', 'b']) expect((await askFromPod(node, pod, '10.96.0.20')).error, pod).toMatch(/ECONNREFUSED/);
    applied = nextLog((l) => l.msg === 'reconciled');
    api.apply('services', serviceObject({ name: 'reviews', namespace: 'shop', clusterIP: '10.96.0.20', ports: [9080] }));
    await applied;
    expect(await askFromPod(node, 'a', '10.96.0.20')).toMatchObject({ server: 'sidecar-a' });
    applied = nextLog((l) => l.msg === 'reconciled');
    api.remove('pods', 'shop', 'web');
    await applied;
    expect(natRules(node.pod('a').netns)).toEqual([]);
    expect((await askFromPod(node, 'a', '10.96.0.20')).error).toMatch(/ECONNREFUSED/);
    expect(await askFromPod(node, 'b', '10.96.0.20')).toMatchObject({ server: 'sidecar-b' });
  });
});
