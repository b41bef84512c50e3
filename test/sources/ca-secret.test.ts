// The mesh CA in a Kubernetes Secret (Istio's plug-in names, `cacerts` in the agent's namespace)
// against the stand-in API server: agents racing to make the first root end on one (create-if-
// absent: a 409 is read, not an error), an existing Secret is read as it is, and an incomplete one
// is an error naming the missing file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeApiServer, kubeconfigYaml } from '../../src/bench/apiserver.js';
import { MeshCA, selfSignedRoot } from '../../src/identity/ca.js';
import { SecretCaStore } from '../../src/sources/kubernetes/ca-secret.js';
import { loadKubeConfig } from '../../src/sources/kubernetes/client.js';

describe('the mesh CA in a Secret', () => {
  let api: FakeApiServer;
  let dir: string;
  beforeEach(async () => {
    api = new FakeApiServer();
    await api.start();
    dir = mkdtempSync(join(tmpdir(), 'sockmesh-k8s-'));
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigYaml(api.url));
  });
  afterEach(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const store = (made: string[] = []) => new SecretCaStore(loadKubeConfig(join(dir, 'kubeconfig')), 'sockmesh-system', 'cacerts', (w) => made.push(w));

  it('three agents finding none at once: one creates it, the others read that one (409 is not an error); all issue under one root', async () => {
    const made: string[] = [];
    const loaded = await Promise.all([store(made), store(made), store(made)].map((s) => s.load('cluster.local')));
    expect(made).toEqual(['Secret sockmesh-system/cacerts']);
    expect(api.secrets.size).toBe(1);
    expect(new Set(loaded.map((m) => m.rootCerts)).size).toBe(1);
    const secret = api.secrets.get('sockmesh-system/cacerts')!;
    expect(Object.keys(secret.data as object).sort()).toEqual(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    const a = new MeshCA(store(), 'cluster.local', 'node-a');
    const b = new MeshCA(store(), 'cluster.local', 'node-b');
    await a.refresh(3600_000);
    await b.refresh(3600_000);
    expect(a.trustBundle()).toBe(b.trustBundle());
  });

  it('reads an existing Secret as it is; one without the key is an error naming it', async () => {
    const m = selfSignedRoot('cluster.local');
    const b64 = (t: string) => Buffer.from(t).toString('base64');
    api.secrets.set('sockmesh-system/cacerts', { metadata: { name: 'cacerts', namespace: 'sockmesh-system' }, data: { 'root-cert.pem': b64(m.rootCerts), 'ca-cert.pem': b64(m.caCert), 'ca-key.pem': b64(m.caKey) } });
    expect((await store().load('cluster.local')).rootCerts).toBe(m.rootCerts);
    api.secrets.set('sockmesh-system/cacerts', { metadata: { name: 'cacerts', namespace: 'sockmesh-system' }, data: { 'root-cert.pem': b64(m.rootCerts), 'ca-cert.pem': b64(m.caCert) } });
    await expect(store().load('cluster.local')).rejects.toThrow(/has no ca-key\.pem/);
  });
});
