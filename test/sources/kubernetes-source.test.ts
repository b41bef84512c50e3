// The Kubernetes source against a local API server that speaks the list/watch protocol (paginated
// lists, chunked watch streams, bookmarks, 410 Gone, dropped streams, an outage), with the real
// client-node informers. Pods are found in a cgroup tree and a /proc laid out in a temporary
// directory as the kubelet and the kernel lay them out (the privileged end-to-end test uses real
// ones).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeApiServer, kubeconfigYaml } from '../../src/bench/apiserver.js';
import { authorizationPolicyObject, destinationRuleObject, peerAuthenticationObject, podObject, serviceObject, sliceObject, virtualServiceObject } from '../../src/bench/k8s-objects.js';
import { dump } from 'js-yaml';
import { parseConfigText } from '../../src/config/load.js';
import type { MeshConfig } from '../../src/config/model.js';
import { validateConfig } from '../../src/config/validate/index.js';
import { loadKubeConfig } from '../../src/sources/kubernetes/client.js';
import { KubernetesSource } from '../../src/sources/kubernetes/source.js';
import type { SourceEvent } from '../../src/sources/source.js';
import type { Logger } from '../../src/util/log.js';
import { slow } from '../helpers/slow.js';

interface Line { level: string; msg: string; obj: Record<string, unknown> }

function recorder(): { log: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => { lines.push({ level, obj, msg }); };
  return { log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as unknown as Logger, lines };
}

describe('Kubernetes source', () => {
  let api: FakeApiServer;
  let dir: string;
  let source: KubernetesSource | undefined;
  let events: SourceEvent[];
  let rec: ReturnType<typeof recorder>;

  beforeEach(async () => {
    api = new FakeApiServer({ maxPage: 3, bookmarkMs: 200 });
    await api.start();
    dir = mkdtempSync(join(tmpdir(), 'sockmesh-k8s-'));
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url));
    mkdirSync(join(dir, 'cgroup'));
    mkdirSync(join(dir, 'proc'));
    events = [];
    rec = recorder();
  });

  afterEach(async () => {
    source?.stop();
    source = undefined;
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function start(node = 'n1'): KubernetesSource {
    source = new KubernetesSource({
      kc: loadKubeConfig(join(dir, 'kubeconfig')), node, cgroupRoot: join(dir, 'cgroup'), procRoot: join(dir, 'proc'),
      base: validateConfig({ services: [] }, 'test'), log: rec.log, onEvent: (e) => events.push(e),
      backoffMs: { initial: 50, max: 400 }, retryMs: 100, istioRecheckMs: 100, probeMs: 200, probeTimeoutMs: 300,
    });
    source.start();
    return source;
  }

  async function waitFor<T>(what: string, check: () => T | undefined, ms = slow(10_000)): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = check();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(events.map((e) => e.kind))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  const configs = () => events.filter((e): e is Extract<SourceEvent, { kind: 'config' }> => e.kind === 'config').map((e) => e.config);
  const last = () => configs().at(-1);
  const lastWith = (pred: (c: MeshConfig) => boolean) => waitFor('a matching config', () => { const c = last(); return c && pred(c) ? c : undefined; });
  const names = (c: MeshConfig) => c.services.map((s) => s.name).sort();

  /** A pod's processes as the kubelet and kernel show them: its cgroup (cgroupfs or systemd
   * layout) with a cgroup.procs file, and /proc/<pid>/cgroup naming a container below it. */
  function kubeletPod(uid: string, pid: number, layout: 'cgroupfs' | 'systemd'): string {
    const rel = layout === 'cgroupfs' ? `kubepods/besteffort/pod${uid}` : `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replace(/-/g, '_')}.slice`;
    mkdirSync(join(dir, 'cgroup', rel, 'ctr'), { recursive: true });
    writeFileSync(join(dir, 'cgroup', rel, 'cgroup.procs'), '');
    mkdirSync(join(dir, 'proc', String(pid), 'ns'), { recursive: true });
    writeFileSync(join(dir, 'proc', String(pid), 'cgroup'), `0::/${rel}/ctr\n`);
    return rel;
  }

  it('lists page by page, then follows the watch stream', async () => {
    for (let i = 0; i < 10; i++) api.apply('services', serviceObject({ name: `s${i}`, clusterIP: `10.96.0.${10 + i}`, ports: [80] }));
    start();
    const first = await waitFor('the first config', () => last());
    expect(names(first)).toHaveLength(10);
    expect(first.pods).toEqual([]);
    expect(first.podsOnly).toBe(true); // no meshed pod: nothing meshed, not the single-pod form
    expect(api.stats.lists.services).toBe(1);
    expect(api.stats.pages.services).toBe(4); // 10 items, 3 per page
    api.apply('services', serviceObject({ name: 's10', clusterIP: '10.96.0.30', ports: [8080] }));
    api.remove('services', 'default', 's0');
    const c = await lastWith((x) => x.services.some((s) => s.name === 's10.default') && !x.services.some((s) => s.name === 's0.default'));
    expect(c.services.find((s) => s.name === 's10.default')).toEqual({ name: 's10.default', addresses: ['10.96.0.30'], ports: [8080], redirect: true, splice: 'auto' });
    expect(api.stats.lists.services).toBe(1); // changes came by watch, not by relisting
  });

  it('asks for bookmarks and moves its resourceVersion with them', async () => {
    api.apply('services', serviceObject({ name: 'a', clusterIP: '10.96.0.10', ports: [80] }));
    start();
    await waitFor('the first config', () => last());
    const before = Number(api.resourceVersion);
    // Changes elsewhere (another namespace's pods on another node) move the server's version;
    // only bookmarks tell this node's pod watch about it.
    for (let i = 0; i < 3; i++) api.apply('pods', podObject({ name: `other${i}`, node: 'n2' }));
    await waitFor('a bookmark', () => api.stats.bookmarks > 3);
    api.dropWatches();
    // Two pod watches: this node's (field selector) and the cluster's meshed pods (peers); both resume past `before`.
    await waitFor('the resumed pod watches', () => api.stats.watches.pods.length >= 4);
    expect(api.stats.watches.pods.slice(2).map(Number).every((v) => v > before)).toBe(true);
  });

  it('a stream dropped mid-way resumes from the last version seen, without relisting, and misses nothing', async () => {
    api.apply('services', serviceObject({ name: 'a', clusterIP: '10.96.0.10', ports: [80] }));
    start();
    await waitFor('the first config', () => last());
    api.apply('services', serviceObject({ name: 'b', clusterIP: '10.96.0.11', ports: [80] }));
    await lastWith((c) => c.services.length === 2);
    const seen = api.resourceVersion;
    expect(api.dropWatches()).toBe(4); // services, endpointslices, this node's pods, the cluster's (peers)
    // Changed while no watch is open: the resumed watch replays it from history.
    api.apply('services', serviceObject({ name: 'c', clusterIP: '10.96.0.12', ports: [80] }));
    const c = await lastWith((x) => x.services.length === 3);
    expect(names(c)).toEqual(['a.default', 'b.default', 'c.default']);
    expect(api.stats.watches.services.at(-1)).toBe(seen);
    expect(api.stats.lists.services).toBe(1);
    expect(rec.lines.some((l) => l.msg.startsWith('Kubernetes watch failed'))).toBe(true);
  });

  it('410 Gone after compaction: relists, and objects deleted meanwhile leave the state', async () => {
    for (const n of ['a', 'b', 'c']) api.apply('services', serviceObject({ name: n, clusterIP: `10.96.0.${n.charCodeAt(0)}`, ports: [80] }));
    start();
    await lastWith((c) => c.services.length === 3);
    await api.down();
    api.remove('services', 'default', 'b');
    api.apply('services', serviceObject({ name: 'd', clusterIP: '10.96.0.200', ports: [80] }));
    api.compact();
    await api.start();
    const c = await lastWith((x) => names(x).join() === 'a.default,c.default,d.default');
    expect(c.services).toHaveLength(3);
    expect(api.stats.expired).toBeGreaterThan(0);
    expect(api.stats.lists.services).toBe(2);
  });

  it('an API server down for a while: stale while it is, the state kept, retries spaced by backoff, fresh after', async () => {
    api.apply('services', serviceObject({ name: 'a', clusterIP: '10.96.0.10', ports: [80] }));
    start();
    await waitFor('the first config', () => last());
    const n = configs().length;
    await api.down();
    const stale = await waitFor('stale', () => events.find((e) => e.kind === 'stale'));
    expect(stale).toMatchObject({ kind: 'stale', message: expect.stringMatching(/cannot be reached.*last good state stays applied/) });
    await new Promise((r) => setTimeout(r, 1500));
    // Backoff (50 ms doubling to 400 ms, jittered): a few tries per watch in 1.5 s (four watches:
    // this node's pods, the cluster's, services, endpointslices), not hundreds.
    const tries = rec.lines.filter((l) => l.msg.startsWith('Kubernetes watch failed')).length;
    expect(tries).toBeGreaterThan(3);
    expect(tries).toBeLessThan(80);
    const delays = rec.lines.filter((l) => l.msg.startsWith('Kubernetes watch failed') && l.obj.resource === 'services').map((l) => l.obj.retryInMs as number);
    expect(Math.max(...delays)).toBeGreaterThan(150);
    expect(configs()).toHaveLength(n); // nothing was emitted: the last good state stands
    api.apply('services', serviceObject({ name: 'b', clusterIP: '10.96.0.11', ports: [80] }));
    await api.start();
    await waitFor('fresh', () => events.findLast((e) => e.kind === 'fresh' || e.kind === 'stale')?.kind === 'fresh');
    await lastWith((c) => c.services.length === 2);
  });

  it('a malformed Service annotation: a Warning Event on it, its last good state kept, the rest applied', async () => {
    api.apply('services', serviceObject({ name: 'a', namespace: 'shop', clusterIP: '10.96.0.10', ports: [80], annotations: { 'sockmesh.io/redirect': 'false' } }));
    api.apply('services', serviceObject({ name: 'b', namespace: 'shop', clusterIP: '10.96.0.11', ports: [80] }));
    start();
    await lastWith((c) => c.services.length === 2);
    api.apply('services', serviceObject({ name: 'a', namespace: 'shop', clusterIP: '10.96.0.10', ports: [80], annotations: { 'sockmesh.io/redirect': 'maybe' } }));
    api.apply('services', serviceObject({ name: 'b', namespace: 'shop', clusterIP: '10.96.0.11', ports: [80], annotations: { 'sockmesh.io/splice': 'never' } }));
    const c = await lastWith((x) => x.services.find((s) => s.name === 'b.shop')?.splice === 'never');
    expect(c.services.find((s) => s.name === 'a.shop')).toMatchObject({ redirect: false }); // its last good state
    const ev = await waitFor('an Event', () => api.events[0]);
    expect(ev).toMatchObject({
      kind: 'Event', type: 'Warning', reason: 'SockmeshInvalidAnnotation',
      involvedObject: { kind: 'Service', name: 'a', namespace: 'shop', uid: api.get('services', 'shop', 'a')!.metadata.uid },
      metadata: { namespace: 'shop' },
    });
    expect(ev.message).toMatch(/sockmesh\.io\/redirect: must be "true" or "false", got "maybe"/);
    expect(rec.lines.some((l) => l.level === 'warn' && l.msg.startsWith('malformed annotation') && l.obj.object === 'a.shop')).toBe(true);
  });

  it('a headless Service whose hand-made EndpointSlice claims another Service\'s cluster address loses that address alone; the node keeps following', async () => {
    api.apply('services', serviceObject({ name: 'good', namespace: 'shop', clusterIP: '10.96.0.30', ports: [80] }));
    api.apply('services', serviceObject({ name: 'evil', namespace: 'tenant', clusterIP: 'None', ports: [80] }));
    api.apply('endpointslices', sliceObject({ name: 'evil-1', namespace: 'tenant', service: 'evil', addresses: ['10.96.0.30', '10.244.9.9'], port: 80 }));
    start();
    const c = await lastWith((x) => x.services.some((s) => s.name === 'evil.tenant'));
    expect(c.services.find((s) => s.name === 'good.shop')?.addresses).toEqual(['10.96.0.30']);
    expect(c.services.find((s) => s.name === 'evil.tenant')?.addresses).toEqual(['10.244.9.9']);
    const ev = await waitFor('a conflict Event', () => api.events.find((e) => e.reason === 'SockmeshConflict'));
    expect(ev).toMatchObject({ involvedObject: { kind: 'Service', name: 'evil', namespace: 'tenant' } });
    expect(ev.message).toMatch(/10\.96\.0\.30:80 already belongs to good\.shop: the other addresses apply/);
    // Later changes of other objects still apply.
    api.apply('services', serviceObject({ name: 'good', namespace: 'shop', clusterIP: '10.96.0.30', ports: [80], annotations: { 'sockmesh.io/redirect': 'false' } }));
    await lastWith((x) => x.services.find((s) => s.name === 'good.shop')?.redirect === false);
    expect(events.some((e) => e.kind === 'rejected')).toBe(false);
  });

  it('two Services claiming one cluster address (a misbehaving API server): the older keeps it, the newer is left out and told', async () => {
    api.apply('services', serviceObject({ name: 'new', namespace: 'b', clusterIP: '10.96.0.31', ports: [80], created: '2026-11-27T10:00:00Z' }));
    api.apply('services', serviceObject({ name: 'old', namespace: 'a', clusterIP: '10.96.0.31', ports: [80], created: '2026-11-25T10:00:00Z' }));
    api.apply('services', serviceObject({ name: 'other', namespace: 'a', clusterIP: '10.96.0.32', ports: [80] }));
    start();
    const c = await lastWith((x) => x.services.length === 2);
    expect(names(c)).toEqual(['old.a', 'other.a']);
    const ev = await waitFor('a conflict Event', () => api.events.find((e) => e.reason === 'SockmeshConflict'));
    expect(ev).toMatchObject({ involvedObject: { name: 'new', namespace: 'b' } });
    expect(ev.message).toMatch(/10\.96\.0\.31:80 already belongs to old\.a: this Service is left out/);
  });

  it('a Service with 65,535 ports is refused on its own (Event), and new pods and annotations keep applying', async () => {
    const many = serviceObject({ name: 'huge', namespace: 'tenant', clusterIP: '10.96.0.40', ports: [1] });
    (many.spec as { ports: unknown[] }).ports = Array.from({ length: 65535 }, (_, i) => ({ name: `p${i}`, port: i + 1, protocol: 'TCP', targetPort: i + 1 }));
    api.apply('services', many);
    api.apply('services', serviceObject({ name: 'b', namespace: 'shop', clusterIP: '10.96.0.41', ports: [80] }));
    start();
    await lastWith((c) => names(c).join() === 'b.shop');
    const ev = await waitFor('an Event', () => api.events.find((e) => (e.involvedObject as { name: string }).name === 'huge'));
    expect(ev.message).toMatch(/spec\.ports: has 65535 TCP ports; sockmesh captures Services with at most 256/);
    const p = api.apply('pods', podObject({ name: 'web', namespace: 'shop', node: 'n1', ips: ['10.244.1.5'], istioProxy: true }));
    kubeletPod(p.metadata.uid!, 4242, 'cgroupfs');
    await lastWith((c) => c.pods.length === 1);
    api.apply('services', serviceObject({ name: 'b', namespace: 'shop', clusterIP: '10.96.0.41', ports: [80], annotations: { 'sockmesh.io/redirect': 'false' } }));
    await lastWith((c) => c.services[0]?.redirect === false);
    expect(events.some((e) => e.kind === 'rejected')).toBe(false);
  });

  it('more service keys than the node\'s map holds: the oldest are admitted, the others named in Events, and the state applies', async () => {
    // 300 Services of 250 ports each: 75,000 keys for a map of 65,536.
    for (let i = 0; i < 300; i++) {
      api.apply('services', serviceObject({ name: `s${i}`, namespace: 'load', clusterIP: `10.97.${i >> 8}.${i & 255}`, ports: Array.from({ length: 250 }, (_, j) => 1000 + j), created: `2026-11-${String(1 + Math.floor(i / 12)).padStart(2, '0')}T${String(i % 12).padStart(2, '0')}:00:00Z` }));
    }
    start();
    const c = await lastWith((x) => x.services.length > 0);
    expect(c.services.length).toBe(262); // 262 × 250 = 65,500 keys fit
    expect(c.services.some((s) => s.name === 's0.load')).toBe(true);
    expect(c.services.some((s) => s.name === 's299.load')).toBe(false);
    const ev = await waitFor('a capacity Event', () => api.events.find((e) => e.reason === 'SockmeshCapacity' && (e.involvedObject as { name: string }).name === 's299'));
    expect(ev.message).toMatch(/left out: the node's kernel map sm_services holds 65536 service keys .*oldest first/);
  }, slow(60_000));

  it('two pods the API server gives one address: the older is meshed, the newer left out with an Event', async () => {
    const a = api.apply('pods', podObject({ name: 'first', namespace: 'shop', node: 'n1', ips: ['10.244.1.9'], istioProxy: true, created: '2026-11-20T10:00:00Z' }));
    const b = api.apply('pods', podObject({ name: 'second', namespace: 'shop', node: 'n1', ips: ['10.244.1.9'], istioProxy: true, created: '2026-11-21T10:00:00Z' }));
    kubeletPod(a.metadata.uid!, 5151, 'cgroupfs');
    kubeletPod(b.metadata.uid!, 5252, 'cgroupfs');
    start();
    const c = await lastWith((x) => x.pods.length === 1);
    expect(c.pods[0].name).toBe('first.shop');
    const ev = await waitFor('an Event', () => api.events.find((e) => e.reason === 'SockmeshNotApplied'));
    expect(ev).toMatchObject({ involvedObject: { kind: 'Pod', name: 'second' } });
    expect(ev.message).toMatch(/10\.244\.1\.9 is also an address of pods\[0\] \(first\.shop\)/);
  });

  it('an API server that hangs (connections open, nothing answered): stale within a probe, the change made meanwhile applied once it answers', async () => {
    api.apply('services', serviceObject({ name: 'a', namespace: 'shop', clusterIP: '10.96.0.50', ports: [80] }));
    start();
    await lastWith((c) => c.services.length === 1);
    api.hang();
    await waitFor('stale', () => events.at(-1)?.kind === 'stale', 5000);
    expect((events.at(-1) as { message: string }).message).toMatch(/did not answer|no answer from the API server/);
    api.apply('services', serviceObject({ name: 'a', namespace: 'shop', clusterIP: '10.96.0.50', ports: [80], annotations: { 'sockmesh.io/redirect': 'false' } }));
    await new Promise((r) => setTimeout(r, 500));
    api.resume();
    await lastWith((c) => c.services[0]?.redirect === false);
    await waitFor('fresh', () => events.findLast((e) => e.kind === 'fresh' || e.kind === 'stale')?.kind === 'fresh');
  });

  it('Istio\'s API group answering 500 at the first start: the state comes without Istio policies, never stale, and they apply once it answers', async () => {
    const withIstio = new FakeApiServer({ istio: true, bookmarkMs: 200 });
    await withIstio.start();
    try {
      withIstio.setIstioError(500);
      writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(withIstio.url));
      withIstio.apply('services', serviceObject({ name: 'r', namespace: 'shop', clusterIP: '10.96.0.51', ports: [80] }));
      withIstio.apply('destinationrules', destinationRuleObject({ name: 'r', namespace: 'shop', host: 'r', trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } } }));
      start();
      const first = await lastWith((c) => c.services.length === 1);
      expect(first.services[0].policy).toBeUndefined();
      expect(events.filter((e) => e.kind === 'stale' || e.kind === 'rejected'), JSON.stringify(events)).toEqual([]);
      withIstio.setIstioError(undefined);
      await lastWith((c) => c.services[0]?.policy?.loadBalancer === 'LEAST_REQUEST');
    } finally {
      source?.stop();
      source = undefined;
      await withIstio.close();
    }
  });

  it('a kubeconfig whose server is http:// on the loopback (kubectl proxy) works; elsewhere it is refused at once, saying what to change', async () => {
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url).replace(/, insecure-skip-tls-verify: true/, ''));
    api.apply('services', serviceObject({ name: 'p', namespace: 'shop', clusterIP: '10.96.0.52', ports: [80] }));
    start();
    await lastWith((c) => c.services.length === 1);
    writeFileSync(join(dir, 'kubeconfig-remote'), kubeconfigYaml('http://192.0.2.10:8080').replace(/, insecure-skip-tls-verify: true/, ''));
    expect(() => loadKubeConfig(join(dir, 'kubeconfig-remote'))).toThrow(/http:\/\/192\.0\.2\.10:8080: plain HTTP would send the credentials unencrypted.*use the cluster's https:\/\/ address/);
  });

  it('says which meshed pods it could not find on the node yet, and finds one the moment its cgroup is populated', async () => {
    const p = api.apply('pods', podObject({ name: 'late', namespace: 'shop', node: 'n1', ips: ['10.244.1.8'], istioProxy: true }));
    start();
    const first = await waitFor('a state', () => events.find((e): e is Extract<SourceEvent, { kind: 'config' }> => e.kind === 'config'));
    expect(first.config.pods).toEqual([]);
    expect(first.unresolved).toEqual([{ pod: 'late.shop', message: expect.stringMatching(/^no cgroup at /) }]);
    kubeletPod(p.metadata.uid!, 4545, 'cgroupfs');
    const found = await lastWith((c) => c.pods.length === 1);
    expect(found.pods[0].name).toBe('late.shop');
    expect((events.findLast((e) => e.kind === 'config') as { unresolved?: unknown }).unresolved).toBeUndefined();
  });

  it('a kernel-mode Service follows its EndpointSlices: endpoints come and go with them', async () => {
    api.apply('services', serviceObject({ name: 'r', namespace: 'shop', clusterIP: '10.96.0.12', ports: [9080], annotations: { 'sockmesh.io/mode': 'kernel' } }));
    api.apply('endpointslices', sliceObject({ name: 'r-1', namespace: 'shop', service: 'r', addresses: ['10.244.1.7', '10.244.2.8'], port: 9080 }));
    start();
    const eps = (c: MeshConfig) => c.services.find((x) => x.name === 'r.shop')?.endpoints?.map((e) => e.address);
    await lastWith((c) => eps(c)?.join() === '10.244.1.7,10.244.2.8');
    expect(last()!.services[0]).toMatchObject({ mode: 'kernel', ports: [9080] });
    api.apply('endpointslices', sliceObject({ name: 'r-1', namespace: 'shop', service: 'r', addresses: ['10.244.2.8'], port: 9080 }));
    await lastWith((c) => eps(c)?.join() === '10.244.2.8');
    api.remove('endpointslices', 'shop', 'r-1');
    await lastWith((c) => eps(c)?.length === 0); // no endpoint: connections are refused
  });

  it('meshed pods of this node, found in either cgroup layout, with their annotations; a deleted pod leaves', async () => {
    const a = api.apply('pods', podObject({ name: 'web', namespace: 'shop', node: 'n1', ips: ['10.244.1.5'], istioProxy: true, annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '3306' } }));
    const b = api.apply('pods', podObject({ name: 'api', namespace: 'shop', node: 'n1', ips: ['10.244.1.6'], labels: { 'sockmesh.io/mesh': 'enabled' }, istioProxy: { runAsUser: 1500 } }));
    api.apply('pods', podObject({ name: 'plain', namespace: 'shop', node: 'n1', ips: ['10.244.1.7'] }));
    api.apply('pods', podObject({ name: 'elsewhere', namespace: 'shop', node: 'n2', ips: ['10.244.2.5'], istioProxy: true }));
    const relA = kubeletPod(a.metadata.uid!, 4242, 'cgroupfs');
    start();
    // b's cgroup is not there yet: a alone, then b once the kubelet has made it.
    const first = await lastWith((c) => c.pods.length === 1);
    expect(first.pods[0]).toMatchObject({ name: 'web.shop', cgroup: relA, netns: join(dir, 'proc', '4242', 'ns', 'net'), addresses: ['10.244.1.5'] });
    expect(first.pods[0].capture.excludeOutboundPorts).toEqual([3306]);
    const relB = kubeletPod(b.metadata.uid!, 4343, 'systemd');
    const both = await lastWith((c) => c.pods.length === 2);
    expect(both.pods.find((p) => p.name === 'api.shop')).toMatchObject({ cgroup: relB, netns: join(dir, 'proc', '4343', 'ns', 'net'), sidecar: { uid: 1500, gid: 1500 } });
    expect(api.stats.lists.pods).toBe(2); // this node's, and the cluster's meshed pods (peers)
    expect(api.stats.watches.pods.length).toBeGreaterThan(0);
    api.remove('pods', 'shop', 'web');
    const after = await lastWith((c) => c.pods.length === 1);
    expect(after.pods[0].name).toBe('api.shop');
  });

  it('speaks HTTPS with the kubeconfig\'s CA and bearer token, as to a real cluster; a wrong token is a failure it retries', async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=kube-apiserver',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'pipe' });
    const tls = { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
    await api.close();
    api = new FakeApiServer({ tls, token: 's3cret' });
    await api.start();
    expect(api.url).toMatch(/^https:/);
    api.apply('services', serviceObject({ name: 'a', clusterIP: '10.96.0.10', ports: [80] }));
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url, { ca: tls.cert, token: 'wrong' }));
    start();
    await waitFor('a refused list', () => rec.lines.find((l) => l.msg.startsWith('Kubernetes watch failed') && /HTTP 401/.test(String(l.obj.error))));
    expect(last()).toBeUndefined();
    source!.stop();
    await new Promise((r) => setTimeout(r, 300)); // a request of the stopped source still in flight
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url, { ca: tls.cert, token: 's3cret' }));
    const before = api.unauthorized;
    start();
    const c = await lastWith((x) => x.services.length === 1);
    expect(c.services[0].name).toBe('a.default');
    api.apply('services', serviceObject({ name: 'b', clusterIP: '10.96.0.11', ports: [80] }));
    await lastWith((x) => x.services.length === 2); // the watch, over TLS too
    expect(api.unauthorized).toBe(before);
  });

  it('under churn (services, slices and pods created, changed, deleted, watches dropped) ends equal to the server and keeps nothing deleted', async () => {
    const pods = Array.from({ length: 6 }, (_, i) => {
      const p = api.apply('pods', podObject({ name: `p${i}`, node: 'n1', ips: [`10.244.1.${i + 1}`], istioProxy: true }));
      kubeletPod(p.metadata.uid!, 5000 + i, i % 2 ? 'systemd' : 'cgroupfs');
      return p;
    });
    start();
    await lastWith((c) => c.pods.length === 6);
    let seed = 7;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    for (let round = 0; round < 400; round++) {
      const i = rnd(60);
      switch (rnd(5)) {
        case 0: api.remove('services', 'churn', `s${i}`); break;
        case 1: api.remove('endpointslices', 'churn', `h${i}-x`); break;
        case 2: api.apply('endpointslices', sliceObject({ name: `h${i}-x`, namespace: 'churn', service: `h${i}`, addresses: [`10.244.9.${i}`, `10.244.8.${rnd(200)}`], port: 5432 })); break;
        case 3: api.apply('services', serviceObject({ name: `h${i}`, namespace: 'churn', clusterIP: 'None', ports: [5432] })); break;
        default: api.apply('services', serviceObject({ name: `s${i}`, namespace: 'churn', clusterIP: `10.96.7.${i}`, ports: [80], annotations: rnd(2) ? { 'sockmesh.io/redirect': 'false' } : {} }));
      }
      if (round % 50 === 25) api.dropWatches();
      if (round % 100 === 60) api.remove('pods', 'default', `p${rnd(6)}`);
      if (round % 10 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    // What the server holds now, as the source should see it.
    const clusterIps = [...Array(60).keys()].filter((i) => api.get('services', 'churn', `s${i}`)).map((i) => `s${i}.churn`);
    const headless = [...Array(60).keys()].filter((i) => api.get('services', 'churn', `h${i}`) && api.get('endpointslices', 'churn', `h${i}-x`)).map((i) => `h${i}.churn`);
    const podsLeft = pods.filter((p) => api.get('pods', 'default', p.metadata.name)).map((p) => `${p.metadata.name}.default`).sort();
    const want = [...clusterIps, ...headless].sort();
    const c = await lastWith((x) => JSON.stringify(names(x)) === JSON.stringify(want) && JSON.stringify(x.pods.map((p) => p.name).sort()) === JSON.stringify(podsLeft));
    for (const i of [...Array(60).keys()]) {
      const svc = api.get('services', 'churn', `s${i}`) as { metadata: { annotations?: Record<string, string> } } | undefined;
      if (svc) expect(c.services.find((s) => s.name === `s${i}.churn`)!.redirect, `s${i}`).toBe(svc.metadata.annotations?.['sockmesh.io/redirect'] !== 'false');
    }
    // Nothing of a deleted object stays in the source.
    const internals = source as unknown as { services: Map<string, unknown>; pods: Map<string, unknown>; slices: Map<string, Map<string, unknown>>; located: Map<string, unknown> };
    const held = (prefix: string) => [...Array(60).keys()].filter((i) => api.get('services', 'churn', `${prefix}${i}`)).length;
    expect(internals.services.size).toBe(held('s') + held('h'));
    expect(internals.pods.size).toBe(podsLeft.length);
    expect(internals.located.size).toBe(podsLeft.length);
    expect([...internals.slices.values()].reduce((n, m) => n + m.size, 0)).toBe([...Array(60).keys()].filter((i) => api.get('endpointslices', 'churn', `h${i}-x`)).length);
  });

  it('a malformed pod annotation: the pod keeps its last good capture settings', async () => {
    const a = api.apply('pods', podObject({ name: 'web', node: 'n1', ips: ['10.244.1.5'], istioProxy: true, annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '3306' } }));
    kubeletPod(a.metadata.uid!, 4242, 'cgroupfs');
    start();
    await lastWith((c) => c.pods.length === 1);
    api.apply('pods', podObject({ name: 'web', node: 'n1', uid: a.metadata.uid, ips: ['10.244.1.5'], istioProxy: true, annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '3306,mysql' } }));
    const ev = await waitFor('an Event', () => api.events[0]);
    expect(ev).toMatchObject({ involvedObject: { kind: 'Pod', name: 'web' }, message: expect.stringMatching(/excludeOutboundPorts: "mysql" is not a port/) });
    expect(last()!.pods[0].capture.excludeOutboundPorts).toEqual([3306]);
  });

  describe('Istio security (PeerAuthentication, AuthorizationPolicy)', () => {
    const strict = { name: 'default', namespace: 'shop', spec: { mtls: { mode: 'STRICT' } } };
    const allow = { name: 'ratings', namespace: 'shop', spec: { selector: { matchLabels: { app: 'ratings' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }], to: [{ operation: { ports: ['9080'], methods: ['GET'] } }] }] } };
    /** The same objects as documents of a config file, translated by the file source. */
    const asFile = (docs: Array<[string, { name: string; namespace: string; spec: Record<string, unknown> }]>) => parseConfigText(`services: []\n${docs.map(([kind, o]) => `---\n${dump({ apiVersion: 'security.istio.io/v1', kind, metadata: { name: o.name, namespace: o.namespace }, spec: o.spec })}`).join('')}`, 'file');

    it('a pod\'s identity is its namespace and service account, its labels what selectors match', async () => {
      const pod = podObject({ name: 'ratings-1', namespace: 'shop', node: 'n1', ips: ['10.244.1.5'], istioProxy: true, labels: { version: 'v1' } });
      (pod.spec as Record<string, unknown>).serviceAccountName = 'ratings';
      const a = api.apply('pods', pod);
      kubeletPod(a.metadata.uid!, 4545, 'cgroupfs');
      start();
      const c = await lastWith((x) => x.pods.length === 1);
      expect(c.pods[0]).toMatchObject({ name: 'ratings-1.shop', namespace: 'shop', serviceAccount: 'ratings', labels: { app: 'ratings-1', version: 'v1' } });
    });

    it('the other nodes\' meshed pods are the peers this node\'s sidecars call with mTLS (their addresses and identities); others are not', async () => {
      const remote = podObject({ name: 'reviews-1', namespace: 'shop', node: 'n2', ips: ['10.244.2.7'], istioProxy: true });
      (remote.spec as Record<string, unknown>).serviceAccountName = 'reviews';
      api.apply('pods', remote);
      api.apply('pods', podObject({ name: 'plain', namespace: 'shop', node: 'n2', ips: ['10.244.2.8'] }));
      start();
      const c = await lastWith((x) => x.peers.length === 1);
      expect(c.peers).toEqual([{ addresses: ['10.244.2.7'], namespace: 'shop', serviceAccount: 'reviews', labels: { app: 'reviews-1' } }]);
      api.remove('pods', 'shop', 'reviews-1');
      await lastWith((x) => x.peers.length === 0);
    });

    it('without the CRDs: PERMISSIVE and no authorization, never stale; installed: read as the file source reads the same objects; deleted and removed: back to the defaults', async () => {
      start();
      const first = await waitFor('the first config', () => last());
      expect(first.peerAuthentications).toEqual([]);
      expect(first.authorizationPolicies).toEqual([]);
      await waitFor('discovery asked again', () => api.istioDiscoveries >= 3);
      expect(rec.lines.filter((l) => l.msg === 'no Istio security objects')).toHaveLength(1);
      api.setIstio(true);
      api.apply('peerauthentications', peerAuthenticationObject(strict));
      api.apply('authorizationpolicies', authorizationPolicyObject(allow));
      const withBoth = await lastWith((c) => c.peerAuthentications.length === 1 && c.authorizationPolicies.length === 1);
      const file = asFile([['PeerAuthentication', strict], ['AuthorizationPolicy', allow]]);
      expect(withBoth.peerAuthentications).toEqual(file.peerAuthentications);
      expect(withBoth.authorizationPolicies).toEqual(file.authorizationPolicies);
      api.remove('peerauthentications', 'shop', 'default');
      await lastWith((c) => c.peerAuthentications.length === 0 && c.authorizationPolicies.length === 1);
      api.setIstio(false);
      await lastWith((c) => c.authorizationPolicies.length === 0);
      await new Promise((r) => setTimeout(r, 300));
      expect(events.filter((e) => e.kind === 'stale')).toEqual([]);
    });

    it('a new ALLOW policy sockmesh cannot read denies what it selects (ignoring it would let everything in)', async () => {
      api.setIstio(true);
      start();
      await waitFor('the first config', () => last());
      api.apply('authorizationpolicies', authorizationPolicyObject({ name: 'only-front', namespace: 'shop', spec: { selector: { matchLabels: { app: 'ratings' } }, rules: [{ to: [{ operation: { ports: ['http'] } }] }] } }));
      const c = await lastWith((x) => x.authorizationPolicies.length === 1);
      expect(c.authorizationPolicies[0]).toEqual({ name: 'only-front', namespace: 'shop', selector: { app: 'ratings' }, action: 'ALLOW', rules: [] });
      const ev = await waitFor('an Event', () => api.events.find((e) => e.reason === 'SockmeshInvalidPolicy'));
      expect(ev.message).toMatch(/denies every request to the workloads it selects until it can: .*ports\[0\]/);
    });

    it('an API error on security.istio.io never drops the policies: no first state without them, and later errors keep them (stale)', async () => {
      api.setIstio(true);
      api.apply('peerauthentications', peerAuthenticationObject(strict));
      api.setSecurityError(500);
      start();
      await new Promise((r) => setTimeout(r, 600));
      expect(configs()).toEqual([]); // waiting: a state without the STRICT policy would be a downgrade
      api.setSecurityError(undefined);
      await lastWith((c) => c.peerAuthentications[0]?.mode === 'STRICT');
      api.setSecurityError(503);
      api.dropWatches();
      await waitFor('stale', () => events.some((e) => e.kind === 'stale'));
      expect(last()!.peerAuthentications[0]?.mode).toBe('STRICT');
      expect(configs().every((c) => c.peerAuthentications.length === 1)).toBe(true);
      api.setSecurityError(undefined);
      await waitFor('fresh', () => events.some((e) => e.kind === 'fresh'));
    });

    it('a bad object: a Warning Event on it and its last good translation kept; unenforced fields: an Event naming them', async () => {
      api.setIstio(true);
      api.apply('peerauthentications', peerAuthenticationObject(strict));
      start();
      await lastWith((c) => c.peerAuthentications[0]?.mode === 'STRICT');
      api.apply('peerauthentications', peerAuthenticationObject({ ...strict, spec: { mtls: { mode: 'SOMETIMES' } } }));
      const ev = await waitFor('an Event', () => api.events.find((e) => e.reason === 'SockmeshInvalidPolicy'));
      expect(ev).toMatchObject({ type: 'Warning', involvedObject: { kind: 'PeerAuthentication', apiVersion: 'security.istio.io/v1', name: 'default', namespace: 'shop' } });
      expect(ev.message).toMatch(/spec\.mtls\.mode/);
      expect(last()!.peerAuthentications[0].mode).toBe('STRICT');
      api.apply('authorizationpolicies', authorizationPolicyObject({ name: 'deny-ip', namespace: 'shop', spec: { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['1.2.3.4'] } }] }] } }));
      await lastWith((c) => c.authorizationPolicies.length === 1);
      const ignored = await waitFor('an Event', () => api.events.find((e) => e.reason === 'SockmeshIgnoredFields'));
      expect(ignored).toMatchObject({ involvedObject: { kind: 'AuthorizationPolicy', name: 'deny-ip' } });
      expect(ignored.message).toMatch(/ipBlocks/);
    });
  });

  describe('Istio traffic policy', () => {
    const ratings = () => api.apply('services', serviceObject({ name: 'ratings', namespace: 'shop', clusterIP: '10.96.0.30', ports: [9080], http: true }));
    const slice = () => api.apply('endpointslices', sliceObject({ name: 'ratings-1', namespace: 'shop', service: 'ratings', addresses: ['10.244.1.11', '10.244.2.12'], port: 9080 }));
    const policyOf = (c: MeshConfig | undefined) => c?.services.find((s) => s.name === 'ratings.shop')?.policy;

    it('without Istio\'s CRDs: the state comes without them and is never stale; installed later, then removed: policies come and go', async () => {
      ratings();
      slice();
      start();
      const first = await waitFor('the first config', () => last());
      expect(first.services[0]).toMatchObject({ protocol: 'http', endpoints: [{ address: '10.244.1.11' }, { address: '10.244.2.12' }] });
      expect(first.services[0].policy).toBeUndefined();
      await waitFor('discovery asked again', () => api.istioDiscoveries >= 3);
      expect(events.some((e) => e.kind === 'stale')).toBe(false);
      expect(rec.lines.filter((l) => l.msg === 'no Istio traffic policy objects')).toHaveLength(1); // said once, not per look
      api.setIstio(true);
      api.apply('destinationrules', destinationRuleObject({ name: 'ratings', namespace: 'shop', host: 'ratings', trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' }, outlierDetection: { consecutive5xxErrors: 3, interval: '5s', baseEjectionTime: '30s' } } }));
      api.apply('virtualservices', virtualServiceObject({ name: 'ratings', namespace: 'shop', hosts: ['ratings.shop.svc.cluster.local'], http: [{ route: [{ destination: { host: 'ratings' } }], timeout: '1s', retries: { attempts: 2, perTryTimeout: '300ms', retryOn: 'connect-failure,5xx' } }] }));
      const withPolicy = await lastWith((c) => policyOf(c)?.retries !== undefined && policyOf(c)?.loadBalancer !== undefined);
      expect(policyOf(withPolicy)).toEqual({
        loadBalancer: 'LEAST_REQUEST', outlierDetection: { consecutive5xxErrors: 3, intervalMs: 5000, baseEjectionTimeMs: 30_000 },
        timeoutMs: 1000, retries: { attempts: 2, perTryTimeoutMs: 300, retryOn: ['connect-failure', '5xx'] },
      });
      // A change follows; deleting the VirtualService takes its part away.
      api.apply('destinationrules', destinationRuleObject({ name: 'ratings', namespace: 'shop', host: 'ratings', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }));
      await lastWith((c) => policyOf(c)?.loadBalancer === 'RANDOM' && policyOf(c)?.outlierDetection === undefined);
      api.remove('virtualservices', 'shop', 'ratings');
      await lastWith((c) => policyOf(c)?.retries === undefined && policyOf(c)?.loadBalancer === 'RANDOM');
      // The CRDs removed: their objects are gone, and so are the policies; still never stale.
      api.setIstio(false);
      await lastWith((c) => policyOf(c) === undefined);
      await new Promise((r) => setTimeout(r, 300));
      expect(events.filter((e) => e.kind === 'stale')).toEqual([]);
    });

    it('a bad DestinationRule: a Warning Event on it and its last good policy kept; fields sockmesh does not enforce: an Event naming them', async () => {
      api.setIstio(true);
      ratings();
      api.apply('destinationrules', destinationRuleObject({ name: 'ratings', namespace: 'shop', host: 'ratings', trafficPolicy: { connectionPool: { tcp: { maxConnections: 100 } } } }));
      start();
      await lastWith((c) => policyOf(c)?.connectionPool?.tcp.maxConnections === 100);
      api.apply('destinationrules', destinationRuleObject({ name: 'ratings', namespace: 'shop', host: 'ratings', trafficPolicy: { connectionPool: { tcp: { maxConnections: -5 } } } }));
      const ev = await waitFor('an Event', () => api.events.find((e) => e.reason === 'SockmeshInvalidPolicy'));
      expect(ev).toMatchObject({ type: 'Warning', involvedObject: { kind: 'DestinationRule', apiVersion: 'networking.istio.io/v1', name: 'ratings', namespace: 'shop' } });
      expect(ev.message).toMatch(/keeps this DestinationRule's last good state: policy\.connectionPool\.tcp\.maxConnections/);
      expect(policyOf(last())?.connectionPool?.tcp.maxConnections).toBe(100);
      api.apply('virtualservices', virtualServiceObject({ name: 'ratings', namespace: 'shop', hosts: ['ratings'], http: [{ match: [{ uri: { prefix: '/v2' } }], route: [{ destination: { host: 'ratings', subset: 'v2' } }] }, { route: [{ destination: { host: 'ratings' } }], timeout: '2s', mirror: { host: 'shadow' } }] }));
      await lastWith((c) => policyOf(c)?.routes?.[1]?.timeoutMs === 2000);
      expect(policyOf(last())?.routes?.[0]).toMatchObject({ match: [{ uri: { prefix: '/v2' } }], route: [{ host: 'ratings.shop', subset: 'v2', weight: 100 }] });
      const ignored = await waitFor('an Event', () => api.events.find((e) => e.reason === 'SockmeshIgnoredFields'));
      expect(ignored).toMatchObject({ involvedObject: { kind: 'VirtualService', name: 'ratings' } });
      expect(ignored.message).toMatch(/applies this VirtualService's policy but not: spec\.http\[1\]\.mirror: not enforced by sockmesh/);
    });

    it('an HTTP Service follows its EndpointSlices, also back from more endpoints than a service lists', async () => {
      ratings();
      slice();
      start();
      const eps = (c: MeshConfig) => c.services.find((x) => x.name === 'ratings.shop')?.endpoints?.map((e) => e.address);
      await lastWith((c) => eps(c)?.join() === '10.244.1.11,10.244.2.12');
      const many = Array.from({ length: 70 }, (_, i) => `10.244.3.${i + 1}`);
      api.apply('endpointslices', sliceObject({ name: 'ratings-1', namespace: 'shop', service: 'ratings', addresses: many, port: 9080 }));
      await lastWith((c) => eps(c) === undefined); // 70 > 64: the sidecar passes through to the cluster address
      api.apply('endpointslices', sliceObject({ name: 'ratings-1', namespace: 'shop', service: 'ratings', addresses: ['10.244.2.12'], port: 9080 }));
      await lastWith((c) => eps(c)?.join() === '10.244.2.12');
    });

    it('a rule in the Service\'s own namespace wins over an older one elsewhere; a wildcard host names no Service', async () => {
      api.setIstio(true);
      ratings();
      api.apply('destinationrules', destinationRuleObject({ name: 'global', namespace: 'istio-system', host: 'ratings.shop.svc.cluster.local', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } }, created: '2026-01-01T00:00:00Z' }));
      api.apply('destinationrules', destinationRuleObject({ name: 'all', namespace: 'shop', host: '*.shop.svc.cluster.local', trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } } }));
      start();
      await lastWith((c) => policyOf(c)?.loadBalancer === 'RANDOM');
      api.apply('destinationrules', destinationRuleObject({ name: 'local', namespace: 'shop', host: 'ratings', trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } }, created: '2026-11-01T00:00:00Z' }));
      await lastWith((c) => policyOf(c)?.loadBalancer === 'ROUND_ROBIN');
      api.remove('destinationrules', 'shop', 'local');
      await lastWith((c) => policyOf(c)?.loadBalancer === 'RANDOM');
    });
  });
});
