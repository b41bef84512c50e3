// mTLS and authorization under `sockmesh agent --kubernetes`, driven only through the stand-in API
// server: two meshed pods of the node (kubelet cgroup layout, real namespaces, real HAProxy
// sidecars) get identities from their service accounts and certificates from a CA the first agent
// creates in the cacerts Secret; Istio's PeerAuthentication (STRICT) and AuthorizationPolicy
// objects apply to real traffic; deleting them, then removing the CRDs, brings the defaults back
// (PERMISSIVE, no authorization) and the source is never stale.
import { X509Certificate, randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FakeApiServer, kubeconfigYaml } from '../../src/bench/apiserver.js';
import { authorizationPolicyObject, peerAuthenticationObject, podObject, serviceObject, sliceObject } from '../../src/bench/k8s-objects.js';
import { certificatesOf } from '../../src/identity/x509.js';
import { NodeTopology } from '../../src/topology/node.js';
import type { Line, Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { inPodNetns } from '../helpers/pods.js';
import { CLI, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { closeKubeNode, startKubeAgent } from '../helpers/kube-node.js';
import { slow } from '../helpers/slow.js';

const F = '10.206.0.11';
const R = '10.206.0.12';
const OUT = '10.206.0.13';

privileged('mTLS and authorization from the cluster (agent --kubernetes)', () => {
  const instance = uniqueName('mk');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const api = new FakeApiServer({ bookmarkMs: 500, istio: true });
  const uids = { front: randomUUID(), ratings: randomUUID() };
  let node: NodeTopology;
  let agent: Proc | undefined;
  const sidecars: Record<string, Proc> = {};

  beforeAll(async () => {
    chmodSync(dir, 0o711);
    await api.start();
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url));
    writeFileSync(join(dir, 'empty.yaml'), 'services: []\n');
    node = await NodeTopology.create(instance, []);
    await node.addPod('front', `kubepods/besteffort/pod${uids.front}/app`, F);
    await node.addPod('ratings', `kubepods/besteffort/pod${uids.ratings}/app`, R);
    await node.addPod('out', 'outside/app', OUT);
    for (const [name, sa, ip] of [['front', 'frontend', F], ['ratings', 'ratings', R]] as const) {
      const p = podObject({ name, namespace: 'shop', node: 'node-1', uid: uids[name], ips: [ip], istioProxy: true });
      (p.spec as Record<string, unknown>).serviceAccountName = sa;
      api.apply('pods', p);
    }
    api.apply('services', serviceObject({ name: 'ratings', namespace: 'shop', clusterIP: '10.96.0.30', ports: [9080], http: true }));
    api.apply('endpointslices', sliceObject({ name: 'ratings-1', namespace: 'shop', service: 'ratings', addresses: [R], port: 9080 }));
    api.apply('peerauthentications', peerAuthenticationObject({ name: 'default', namespace: 'shop', spec: { mtls: { mode: 'STRICT' } } }));
    api.apply('authorizationpolicies', authorizationPolicyObject({ name: 'ratings', namespace: 'shop', spec: { selector: { matchLabels: { app: 'ratings' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }] } }));
    const app = node.spawnNode('ratings', PEER, ['http-serve', '--host', '0.0.0.0', '--port', '9080', '--name', 'ratings'], 'app ratings');
    for (const p of ['front', 'ratings']) {
      sidecars[p] = node.spawnNode(p, CLI, ['sidecar', '--config', join(dir, 'empty.yaml'), '--instance', instance, '--id', p, '--run-dir', join(dir, `run-${p}`), '--metrics-listen', ''], `sidecar ${p}`);
    }
    await Promise.all([app, ...Object.values(sidecars)].map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
    agent = await startKubeAgent({ dir, node, instance });
    await Promise.all(Object.values(sidecars).map((s) => s.waitFor((l) => l.event === 'policy' && l.from === 'agent' && s.lines.some((x) => x.event === 'identity'), slow(30_000))));
    await new Promise((r) => setTimeout(r, 500));
  });

  afterAll(async () => {
    await closeKubeNode({ agent, instance, node, api, dir });
  });

  const inOut = (cmd: string[]) => inPodNetns(node, 'out', cmd).out;
  async function load(count: number): Promise<Line> {
    const p = node.spawnNode('front', PEER, ['http-load', '--host', '10.96.0.30', '--port', '9080', '--count', String(count)], 'load');
    return p.waitFor((l) => l.event === 'done', slow(60_000));
  }
  /** After a change in the cluster: every sidecar on the agent's next version, and its new worker serving. */
  async function settled(marks: Record<string, number>): Promise<void> {
    await Promise.all(Object.entries(sidecars).map(([p, s]) => s.waitForFrom(marks[p], (l) => l.event === 'policy-applied', slow(30_000))));
    await new Promise((r) => setTimeout(r, 500));
  }
  const marks = () => Object.fromEntries(Object.entries(sidecars).map(([p, s]) => [p, s.lines.length]));
  const access = (from: number) => sidecars.ratings.lines.slice(from).filter((l) => l.event === 'access');

  it('identities from the service accounts, certificates under the root the first agent put in the cacerts Secret', () => {
    const secret = api.secrets.get('sockmesh-system/cacerts');
    expect(secret).toBeDefined();
    const root = Buffer.from((secret!.data as Record<string, string>)['root-cert.pem'], 'base64').toString();
    const out = inOut(['openssl', 's_client', '-connect', `${R}:9080`, '-alpn', 'sockmesh', '-showcerts']);
    const chain = certificatesOf(out);
    expect(chain[0].subjectAltName).toContain('URI:spiffe://cluster.local/ns/shop/sa/ratings');
    expect(chain[1].verify(new X509Certificate(root).publicKey)).toBe(true);
  });

  it('STRICT and the ALLOW policy from the cluster: the frontend gets in over mTLS, a plaintext client does not', async () => {
    const from = sidecars.ratings.lines.length;
    expect(await load(3)).toMatchObject({ requests: 3, failures: 0, statuses: { 200: 3 } });
    await sidecars.ratings.waitFor(() => access(from).length >= 3, slow(10_000));
    expect(access(from)[0]).toMatchObject({ tls: true, peer: 'cluster.local/ns/shop/sa/frontend', authz: 'allow:shop/ratings' });
    expect(inOut(['curl', '-s', '-m', '3', `http://${R}:9080/`])).not.toContain('"server":"ratings"');
  });

  it('deleted, back to the defaults; the CRDs removed, no policy at all and never stale', async () => {
    let m = marks();
    api.remove('peerauthentications', 'shop', 'default');
    await settled(m);
    // PERMISSIVE: plaintext reaches the app, but the ALLOW policy still wants the frontend's identity.
    expect(inOut(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '3', `http://${R}:9080/`])).toBe('403');
    m = marks();
    api.setIstio(false);
    await settled(m);
    expect(inOut(['curl', '-s', '-m', '3', `http://${R}:9080/`])).toContain('"server":"ratings"');
    expect(await load(2)).toMatchObject({ statuses: { 200: 2 } });
    const st = JSON.parse((await runCli(['status', '--instance', instance, '--json'])).stdout) as { agent: { source: { stale?: boolean } } };
    expect(st.agent.source.stale ?? false).toBe(false);
  });
});
