// Governance policy from Istio's objects (issue 14): the agent in Kubernetes mode reads a
// DestinationRule and a VirtualService from the API server and pushes the policy they give to a
// real governance sidecar (`sockmesh sidecar --instance`), whose HAProxy configuration then carries
// it; a changed rule reloads it, a changed EndpointSlice goes through the runtime API. What the
// policy does to requests is test/e2e/governance.test.ts's (the same config fields, from a file).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FakeApiServer, kubeconfigYaml } from '../../src/bench/apiserver.js';
import { destinationRuleObject, serviceObject, sliceObject, virtualServiceObject } from '../../src/bench/k8s-objects.js';
import { backendName } from '../../src/sidecar/haproxy.js';
import { NodeTopology } from '../../src/topology/node.js';
import { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { CLI } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

privileged('governance policy from Istio DestinationRule / VirtualService (agent --kubernetes)', () => {
  const instance = uniqueName('gi');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const api = new FakeApiServer({ bookmarkMs: 500, istio: true });
  let node: NodeTopology;
  let agent: Proc | undefined;
  let sidecar: Proc;
  let cfgFile = '';

  beforeAll(async () => {
    await api.start();
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url));
    api.apply('services', serviceObject({ name: 'ratings', namespace: 'shop', clusterIP: '10.96.0.30', ports: [9080], http: true }));
    api.apply('endpointslices', sliceObject({ name: 'ratings-1', namespace: 'shop', service: 'ratings', addresses: ['10.0.0.11', '10.0.0.12'], port: 9080 }));
    api.apply('destinationrules', destinationRuleObject({
      name: 'ratings', namespace: 'shop', host: 'ratings.shop.svc.cluster.local',
      trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' }, outlierDetection: { consecutive5xxErrors: 3, interval: '5s', baseEjectionTime: '30s' } },
    }));
    api.apply('virtualservices', virtualServiceObject({
      name: 'ratings', namespace: 'shop', hosts: ['ratings'],
      http: [{ route: [{ destination: { host: 'ratings' } }], timeout: '1s', retries: { attempts: 2, perTryTimeout: '300ms', retryOn: 'connect-failure,5xx' } }],
    }));
    // A pod namespace of this node for the sidecar's listeners (nothing is meshed: the API lists no pod).
    node = await NodeTopology.create(instance, ['p']);
    agent = new Proc('agent', process.execPath, [CLI, 'agent', '--kubernetes', '--node', 'node-1', '--kubeconfig', join(dir, 'kubeconfig'),
      '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0']);
    await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
    writeFileSync(join(dir, 'file.yaml'), 'services: []\n');
    sidecar = node.spawnNode('p', CLI, ['sidecar', '--config', join(dir, 'file.yaml'), '--instance', instance, '--id', 'pod-p', '--run-dir', join(dir, 'run'), '--metrics-listen', ''], 'governance sidecar');
    cfgFile = String((await sidecar.waitFor((l) => l.event === 'ready', slow(30_000))).config);
  });

  afterAll(async () => {
    await agent?.kill();
    await runCli(['down', '--instance', instance]);
    await node?.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The sidecar's HAProxy section for the ratings backend, once `pred` holds for it. */
  async function backend(pred: (section: string) => boolean): Promise<string> {
    const end = Date.now() + slow(20_000);
    for (;;) {
      const text = readFileSync(cfgFile, 'utf8');
      const start = text.indexOf(`backend ${backendName('out', 'ratings.shop')}\n`);
      const section = start < 0 ? '' : text.slice(start, text.indexOf('\nbackend ', start + 1) >>> 0);
      if (pred(section)) return section;
      if (Date.now() > end) throw new Error(`timed out; the sidecar said ${JSON.stringify(sidecar.lines.slice(-4))}; backend: ${section}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('the sidecar runs the policy the rules give: balancer, retries, per-try timeout, ejection, over the Service\'s endpoints', async () => {
    await sidecar.waitFor((l) => l.event === 'policy-applied' && sidecar.lines.some((x) => x.event === 'policy' && x.from === 'agent'), slow(20_000));
    const section = await backend((s) => s.includes('balance'));
    expect(section).toMatch(/^ {2}mode http$/m);
    expect(section).toMatch(/^ {2}balance leastconn$/m);
    expect(section).toMatch(/^ {2}retries 2$/m);
    expect(section).toMatch(/^ {2}timeout server 300ms$/m);
    expect(section).toMatch(/^ {2}retry-on conn-failure 500 501 502 503 504$/m);
    // The endpoints keep the connection's port (the Service's port is its target port); checked on it.
    expect(section).toMatch(/^ {2}server ep-10\.0\.0\.11-0 10\.0\.0\.11 .*observe layer7 error-limit 3 on-error mark-down port 9080$/m);
    expect(section).toMatch(/^ {2}server ep-10\.0\.0\.12-0 10\.0\.0\.12 /m);
  });

  it('a changed DestinationRule reloads the sidecar; a changed EndpointSlice goes through the runtime API', async () => {
    api.apply('destinationrules', destinationRuleObject({ name: 'ratings', namespace: 'shop', host: 'ratings', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }));
    const reloads = sidecar.lines.filter((l) => l.event === 'policy' && l.via === 'reload').length;
    await sidecar.waitFor(() => sidecar.lines.filter((l) => l.event === 'policy' && l.via === 'reload').length > reloads, slow(20_000));
    const random = await backend((s) => /balance random/.test(s));
    expect(random).not.toMatch(/observe layer7/);
    expect(sidecar.lines.filter((l) => l.event === 'policy' && l.from === 'agent').at(-1)).toMatchObject({ via: 'reload' });
    const before = sidecar.lines.filter((l) => l.event === 'policy').length;
    api.apply('endpointslices', sliceObject({ name: 'ratings-1', namespace: 'shop', service: 'ratings', addresses: ['10.0.0.11'], port: 9080 }));
    await sidecar.waitFor(() => sidecar.lines.filter((x) => x.event === 'policy').length > before, slow(20_000));
    expect(sidecar.lines.filter((l) => l.event === 'policy').at(-1)).toMatchObject({ from: 'agent', via: 'runtime' });
  });

  it('the agent\'s status shows the sidecar running its latest policy version', async () => {
    const end = Date.now() + slow(10_000);
    for (;;) {
      const st = JSON.parse((await runCli(['status', '--instance', instance, '--json'])).stdout) as { agent: { policyVersion: number; sidecars: Array<{ id: string; agentVersion: number }> } };
      const me = st.agent.sidecars.find((s) => s.id === 'pod-p');
      if (me && me.agentVersion === st.agent.policyVersion) {
        expect(st.agent.policyVersion).toBeGreaterThanOrEqual(3);
        return;
      }
      if (Date.now() > end) throw new Error(`status: ${JSON.stringify(st.agent)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});
