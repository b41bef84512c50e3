// DestinationRule subsets and VirtualService routes from the cluster (issue 25), driven only through
// the stand-in API server, in both capture modes: the agent resolves each subset's endpoints from
// the EndpointSlice's pods and their labels; a meshed pod's real HAProxy sidecar, following the
// agent, splits its requests 80/20 between the subsets and sends a header match to v2; when a pod's
// labels change, its endpoint moves to the other subset.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FakeApiServer, kubeconfigYaml } from '../../src/bench/apiserver.js';
import { destinationRuleObject, podObject, serviceObject, sliceObject, virtualServiceObject } from '../../src/bench/k8s-objects.js';
import { NodeTopology } from '../../src/topology/node.js';
import type { Line, Proc } from '../../src/topology/proc.js';
import { CLI, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { closeKubeNode, startKubeAgent } from '../helpers/kube-node.js';
import { slow } from '../helpers/slow.js';

const F = '10.207.0.11';
const EP = { a: '10.207.0.21', b: '10.207.0.22', c: '10.207.0.23' };

for (const mode of ['ebpf', 'iptables'] as const) {
  privileged(`routes and subsets from the cluster (agent --kubernetes, ${mode} capture)`, () => {
    const instance = uniqueName('rk');
    const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
    const api = new FakeApiServer({ bookmarkMs: 500, istio: true });
    const uid = randomUUID();
    let node: NodeTopology;
    let agent: Proc | undefined;
    let sidecar: Proc;
    const pod = (name: string, version: string) => podObject({ name, namespace: 'shop', node: 'node-2', ips: [EP[name as keyof typeof EP]], labels: { app: 'reviews', version } });

    beforeAll(async () => {
      chmodSync(dir, 0o711);
      await api.start();
      writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url));
      writeFileSync(join(dir, 'empty.yaml'), 'services: []\n');
      node = await NodeTopology.create(instance, []);
      await node.addPod('front', `kubepods/besteffort/pod${uid}/app`, F);
      // A route to the cluster addresses, as a pod has (its default route): iptables' NAT comes after routing.
      execFileSync('ip', ['-n', node.pod('front').netns, 'route', 'add', '10.96.0.0/16', 'dev', 'eth0']);
      // The endpoints: pods of another node (not meshed here), reached over the bridge.
      for (const [name, ip] of Object.entries(EP)) await node.addPod(name, `outside/${name}`, ip);
      api.apply('pods', podObject({ name: 'front', namespace: 'shop', node: 'node-1', uid, ips: [F], istioProxy: true }));
      api.apply('pods', pod('a', 'v1'));
      api.apply('pods', pod('b', 'v1'));
      api.apply('pods', pod('c', 'v2'));
      api.apply('services', serviceObject({ name: 'reviews', namespace: 'shop', clusterIP: '10.96.0.60', ports: [9080], http: true }));
      api.apply('endpointslices', sliceObject({ name: 'reviews-1', namespace: 'shop', service: 'reviews', addresses: Object.values(EP), port: 9080, pods: Object.keys(EP) }));
      api.apply('destinationrules', destinationRuleObject({ name: 'reviews', namespace: 'shop', host: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] }));
      api.apply('virtualservices', virtualServiceObject({
        name: 'reviews', namespace: 'shop', hosts: ['reviews'], http: [
          { match: [{ headers: { 'end-user': { exact: 'jason' } } }], route: [{ destination: { host: 'reviews', subset: 'v2' } }] },
          { route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 80 }, { destination: { host: 'reviews', subset: 'v2' }, weight: 20 }] },
        ],
      }));
      const apps = Object.keys(EP).map((name) => node.spawnNode(name, PEER, ['http-serve', '--host', '0.0.0.0', '--port', '9080', '--name', name], `app ${name}`));
      sidecar = node.spawnNode('front', CLI, ['sidecar', '--config', join(dir, 'empty.yaml'), '--instance', instance, '--id', 'front', '--run-dir', join(dir, 'run'), '--metrics-listen', ''], 'sidecar front');
      await Promise.all([...apps, sidecar].map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
      const env = mode === 'iptables' ? ['SOCKMESH_PROBE_FAIL=BPF_MAP_TYPE_SOCKHASH'] : [];
      agent = await startKubeAgent({ dir, node, instance, env });
      await sidecar.waitFor((l) => l.event === 'policy-applied' && sidecar.lines.some((x) => x.event === 'policy' && x.from === 'agent'), slow(30_000));
      await new Promise((r) => setTimeout(r, 500));
    });

    afterAll(async () => {
      await closeKubeNode({ agent, instance, node, api, dir });
    });

    async function load(count: number, header?: string): Promise<Line> {
      const p = node.spawnNode('front', PEER, ['http-load', '--host', '10.96.0.60', '--port', '9080', '--count', String(count), ...(header ? ['--header', header] : [])], 'load');
      return p.waitFor((l) => l.event === 'done', slow(60_000));
    }

    it(`the subsets' endpoints come from the pods' labels: 80/20 over 1,000 requests, a header match to v2 (${mode})`, async () => {
      const split = await load(1000);
      expect(split).toMatchObject({ requests: 1000, failures: 0 });
      const s = split.servers as Record<string, number>;
      expect(Math.abs((s.a + s.b) / 1000 - 0.8)).toBeLessThanOrEqual(0.04);
      expect(s.c).toBe(1000 - s.a - s.b);
      expect(await load(20, 'end-user: jason')).toMatchObject({ failures: 0, servers: { c: 20 } });
    });

    it('a pod whose labels change moves to the other subset', async () => {
      const from = sidecar.lines.length;
      api.apply('pods', pod('b', 'v2'));
      await sidecar.waitForFrom(from, (l) => l.event === 'policy' && l.from === 'agent', slow(30_000));
      await new Promise((r) => setTimeout(r, 300));
      const jason = await load(40, 'end-user: jason');
      expect(jason.failures).toBe(0);
      expect(Object.keys(jason.servers as object).sort()).toEqual(['b', 'c']);
      // It left v1: the 80 % go to a alone now, b shares v2's 20 % with c.
      const split = await load(500);
      const s = split.servers as Record<string, number>;
      expect(split.failures).toBe(0);
      expect(Math.abs(s.a / 500 - 0.8)).toBeLessThanOrEqual(0.06);
      expect((s.b ?? 0) + (s.c ?? 0)).toBe(500 - s.a);
      // The labels moved the endpoint through the runtime API: no reload.
      expect(sidecar.lines.slice(from).find((l) => l.event === 'policy' && l.from === 'agent')).toMatchObject({ via: 'runtime' });
    });
  });
}
