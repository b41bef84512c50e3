// A pod whose certificate cannot be issued at first (the mesh CA's directory is incomplete) is
// rendered without one (no port takes mTLS; a STRICT one refuses everything), and its sidecar keeps
// asking: once the CA can issue, the first certificate is rendered in and the pod serves mTLS.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { selfSignedRoot } from '../../src/identity/ca.js';
import { NodeTopology } from '../../src/topology/node.js';
import { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { inPodNetns } from '../helpers/pods.js';
import { CLI, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const S = '10.205.0.11';
const OUT = '10.205.0.12';

privileged('mTLS: a CA that cannot issue yet, then can', () => {
  const instance = uniqueName('ml');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const caDir = join(dir, 'ca');
  let node: NodeTopology;
  let agent: Proc | undefined;
  let sidecar: Proc;

  beforeAll(async () => {
    chmodSync(dir, 0o711);
    node = await NodeTopology.create(instance, [['solo', S], ['out', OUT]]);
    // Only the trust bundle: the agent refuses to issue (no ca-cert.pem / ca-key.pem).
    mkdirSync(caDir, { mode: 0o700 });
    writeFileSync(join(caDir, 'root-cert.pem'), selfSignedRoot('cluster.local').rootCerts);
    writeFileSync(join(dir, 'mesh.yaml'), `services: []
identity: { caDir: ${caDir} }
pods:
  - { name: solo, cgroup: solo, netns: ${node.pod('solo').netns}, namespace: shop, serviceAccount: solo }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: shop }
spec: { mtls: { mode: STRICT } }
`);
    const app = node.spawnNode('solo', PEER, ['http-serve', '--host', '0.0.0.0', '--port', '9080', '--name', 'solo'], 'app');
    sidecar = node.spawnNode('solo', CLI, ['sidecar', '--config', join(dir, 'mesh.yaml'), '--instance', instance, '--id', 'solo', '--run-dir', join(dir, 'run'), '--metrics-listen', ''], 'sidecar');
    await Promise.all([app, sidecar].map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
    agent = new Proc('agent', process.execPath, [CLI, 'agent', '--config', join(dir, 'mesh.yaml'), '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0']);
    await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
  });

  afterAll(async () => {
    await agent?.kill(10_000);
    await runCli(['down', '--instance', instance]);
    await node?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const inOut = (cmd: string[]) => inPodNetns(node, 'out', cmd).out;

  it('without a certificate the STRICT pod refuses everything; with the first one it serves mTLS as its identity', async () => {
    const err = await sidecar.waitFor((l) => l.event === 'identity-error', slow(20_000));
    expect(String(err.error)).toMatch(/ca-cert\.pem/);
    await sidecar.waitFor((l) => l.event === 'policy' && l.from === 'agent', slow(20_000));
    await sidecar.waitFor((l) => l.event === 'policy-applied' && sidecar.lines.some((x) => x.event === 'policy' && x.from === 'agent'), slow(20_000));
    await new Promise((r) => setTimeout(r, 500)); // the new worker serves; the old one's listeners go
    expect(inOut(['curl', '-s', '-m', '3', `http://${S}:9080/`])).not.toContain('"server":"solo"');
    expect(inOut(['openssl', 's_client', '-connect', `${S}:9080`, '-alpn', 'sockmesh'])).not.toContain('BEGIN CERTIFICATE');
    // The CA can issue now: the directory emptied, the agent makes a self-signed root there.
    rmSync(caDir, { recursive: true, force: true });
    await sidecar.waitFor((l) => l.event === 'identity', slow(30_000));
    await sidecar.waitFor((l) => l.event === 'policy' && l.from === 'identity', slow(20_000));
    await new Promise((r) => setTimeout(r, 300));
    const out = inOut(['openssl', 's_client', '-connect', `${S}:9080`, '-alpn', 'sockmesh']);
    const leaf = (out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/) ?? [''])[0];
    expect(execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName'], { input: leaf, encoding: 'utf8' })).toContain('URI:spiffe://cluster.local/ns/shop/sa/solo');
  });
});
