// Zero trust between meshed pods (issue 24), on real sockets, real HAProxy sidecars and real
// openssl, eBPF capture, three meshed pods of one node (front: shop/frontend, ratings:
// shop/ratings, other: shop/other) and a namespace outside the mesh: the agent's CA issues each
// pod a certificate that its own sidecar fetches over the control socket; sidecars speak mTLS to
// each other (auto mTLS), with Istio's PeerAuthentication modes and AuthorizationPolicy read from
// documents in the config file; renewals under load fail no request.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pinRoot } from '../../src/bpf/bpffs.js';
import { InstanceMaps } from '../../src/bpf/maps.js';
import { pinLayout } from '../../src/bpf/pins.js';
import { selfSignedRoot } from '../../src/identity/ca.js';
import { issue, issuerOf, keyPem, newKeyPair, toPem } from '../../src/identity/x509.js';
import { NodeTopology } from '../../src/topology/node.js';
import { packageRoot } from '../../src/util/paths.js';
import { Proc, type Line } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { inPodNetns } from '../helpers/pods.js';
import { CLI, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const F = '10.203.0.11';
const R = '10.203.0.12';
const O = '10.203.0.13';
const OUT = '10.203.0.14';
const PODS = { front: 'frontend', ratings: 'ratings', other: 'other' } as const;
type Pod = keyof typeof PODS;

/** An AuthorizationPolicy of shop selecting the ratings pod, as a document after the config. */
const ratingsPolicy = (name: string, action: 'ALLOW' | 'DENY', rule: string) => `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: shop }
spec:
  selector: { matchLabels: { app: ratings } }
  action: ${action}
  rules:
    - ${rule}
`;
const ALLOW_FRONTEND = ratingsPolicy('ratings-from-frontend', 'ALLOW', 'from: [{ source: { principals: [cluster.local/ns/shop/sa/frontend] } }]');
const DENY_TCP = ratingsPolicy('no-echo', 'DENY', 'to: [{ operation: { ports: ["9081"] } }]');
const DENY_ADMIN = ratingsPolicy('no-admin', 'DENY', 'to: [{ operation: { paths: ["/admin*"] } }]');

privileged('mTLS, identity and authorization between meshed pods (eBPF capture, HAProxy sidecars)', () => {
  const instance = uniqueName('mt');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const cfgPath = join(dir, 'mesh.yaml');
  const caDir = join(dir, 'ca');
  let node: NodeTopology;
  let agent: Proc | undefined;
  let agentPort = 0;
  const sidecars = {} as Record<Pod, Proc>;
  const cleanups: Array<() => void> = [];

  function config(mode: string, docs = '', certTtl = '1h'): string {
    return `services:
  - { name: ratings, addresses: [10.96.0.30], ports: [9080], protocol: http, endpoints: ['${R}:9080'] }
  - { name: echo, addresses: [10.96.0.31], ports: [9081], endpoints: ['${R}:9081'], splice: always }
spliceHops: always
identity: { caDir: ${caDir}, certTTL: ${certTtl} }
pods:
${(Object.keys(PODS) as Pod[]).map((p) => `  - { name: ${p}, cgroup: ${p}, netns: ${node.pod(p).netns}, namespace: shop, serviceAccount: ${PODS[p]}, labels: { app: ${p} } }`).join('\n')}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: shop }
spec: { mtls: { mode: ${mode} } }
${docs}`;
  }

  /** Saves the config (as editors do) and waits until every sidecar runs the agent's next version. */
  async function save(text: string): Promise<void> {
    const marks = Object.fromEntries((Object.keys(PODS) as Pod[]).map((p) => [p, sidecars[p].lines.length]));
    const tmp = join(dir, `.mesh.${process.hrtime.bigint()}`);
    writeFileSync(tmp, text);
    execFileSync('mv', [tmp, cfgPath]);
    await Promise.all((Object.keys(PODS) as Pod[]).map((p) => sidecars[p].waitForFrom(marks[p], (l) => l.event === 'policy' && l.from === 'agent', slow(30_000))));
    // The reload's new worker serves once HAProxy says so; a short settle for the old one's listeners.
    await new Promise((r) => setTimeout(r, 300));
  }

  beforeAll(async () => {
    // As /run/sockmesh: HAProxy's workers (uid 1337) pass through to their mTLS socket.
    chmodSync(dir, 0o711);
    node = await NodeTopology.create(instance, [['front', F], ['ratings', R], ['other', O], ['out', OUT]]);
    writeFileSync(cfgPath, config('STRICT', ALLOW_FRONTEND));
    const apps = [
      node.spawnNode('ratings', PEER, ['http-serve', '--host', '0.0.0.0', '--port', '9080', '--name', 'ratings'], 'app ratings'),
      node.spawnNode('ratings', PEER, ['serve', '--host', '0.0.0.0', '--port', '9081', '--name', 'echo', '--mode', 'whoami'], 'app echo'),
    ];
    for (const p of Object.keys(PODS) as Pod[]) {
      sidecars[p] = node.spawnNode(p, CLI, ['sidecar', '--config', cfgPath, '--instance', instance, '--id', `pod-${p}`, '--run-dir', join(dir, `run-${p}`), '--metrics-listen', ''], `sidecar ${p}`);
    }
    await Promise.all([...apps, ...Object.values(sidecars)].map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
    agent = new Proc('agent', process.execPath, [CLI, 'agent', '--config', cfgPath, '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0']);
    const ready = await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
    agentPort = Number(String(ready.listen).split(':')[1]);
    // Each sidecar runs the agent's version for its pod with the pod's certificate.
    await Promise.all(Object.values(sidecars).map((s) => s.waitFor((l) => l.event === 'policy' && l.from === 'agent' && s.lines.some((x) => x.event === 'identity'), slow(30_000))));
    await new Promise((r) => setTimeout(r, 300));
  });

  afterAll(async () => {
    await agent?.kill(10_000);
    await runCli(['down', '--instance', instance]);
    await node?.close();
    rmSync(dir, { recursive: true, force: true });
    for (const c of cleanups) c();
  });

  const inNetns = (pod: string, cmd: string[], input = '') => inPodNetns(node, pod, cmd, input);

  async function httpLoad(pod: string, host: string, count: number): Promise<Line> {
    const p = node.spawnNode(pod, PEER, ['http-load', '--host', host, '--port', '9080', '--count', String(count)], `load ${pod}`);
    return p.waitFor((l) => l.event === 'done', slow(60_000));
  }

  /** One line over a new TCP connection to the echo service; the reply, or the error. */
  async function echo(pod: string, line = 'hello'): Promise<{ reply?: Record<string, unknown>; error?: string; proc: Proc }> {
    const proc = node.spawnNode(pod, PEER, ['ask', '--host', '10.96.0.31', '--port', '9081'], `ask ${pod}`);
    const first = await proc.waitFor((l) => l.event === 'connected' || l.event === 'error', slow(10_000));
    if (first.event === 'error') return { error: String(first.message), proc };
    proc.send(line);
    // A connection the sidecar closes ends the client without a reply.
    const r = await proc.waitFor((l) => l.event === 'reply' || l.event === 'error', slow(10_000)).catch(() => ({ event: 'closed' }) as Line);
    return r.event === 'reply' ? { reply: r.reply as Record<string, unknown>, proc } : { error: String(r.message ?? r.event), proc };
  }

  const access = (p: Pod, from: number) => sidecars[p].lines.slice(from).filter((l) => l.event === 'access');

  it('every local hop of an mTLS connection between two pods is still spliced, the bytes identical end to end', async () => {
    const maps = new InstanceMaps(pinLayout(pinRoot(instance)));
    try {
      const before = maps.sockhash.entries().length;
      const r = await echo('front', 'first');
      expect(r.reply).toMatchObject({ server: 'echo', line: 'first' });
      for (let i = 0; i < 50; i++) r.proc.send(`line ${i}`);
      await r.proc.waitFor((l) => l.event === 'reply' && (l.reply as { line: string }).line === 'line 49', slow(10_000));
      expect(r.proc.lines.filter((l) => l.event === 'reply').map((l) => (l.reply as { line: string }).line)).toEqual(['first', ...Array.from({ length: 50 }, (_, i) => `line ${i}`)]);
      // app -> front's sidecar, front's sidecar -> ratings' sidecar (TLS bytes), ratings' sidecar -> app: six sockets.
      expect(maps.sockhash.entries().length - before).toBe(6);
      r.proc.child.stdin!.end();
      await r.proc.exited;
    } finally {
      maps.close();
    }
  });

  it('openssl s_client sees the pod\'s SPIFFE ID; openssl verify accepts it against the mesh root only', () => {
    const r = inNetns('out', ['openssl', 's_client', '-connect', `${R}:9080`, '-alpn', 'sockmesh', '-showcerts'], '');
    const pems = r.out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    expect(pems.length).toBeGreaterThanOrEqual(2); // the leaf and this node's intermediate
    writeFileSync(join(dir, 'leaf.pem'), `${pems[0]}\n`);
    writeFileSync(join(dir, 'chain.pem'), `${pems.slice(1).join('\n')}\n`);
    const san = execFileSync('openssl', ['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-ext', 'subjectAltName'], { encoding: 'utf8' });
    expect(san).toContain('URI:spiffe://cluster.local/ns/shop/sa/ratings');
    const ok = spawnSync('openssl', ['verify', '-CAfile', join(caDir, 'root-cert.pem'), '-untrusted', join(dir, 'chain.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(ok.stdout).toMatch(/: OK/);
    const other = selfSignedRoot('cluster.local');
    writeFileSync(join(dir, 'other-root.pem'), other.rootCerts);
    const bad = spawnSync('openssl', ['verify', '-CAfile', join(dir, 'other-root.pem'), '-untrusted', join(dir, 'chain.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
  });

  /** A client certificate from another CA (same trust domain name, same identity): "frontend". */
  function foreignClient(): string {
    const m = selfSignedRoot('cluster.local');
    const root = new X509Certificate(m.caCert);
    const k = newKeyPair();
    const der = issue({ subject: {}, publicKey: k.publicKey, issuer: issuerOf(root), signingKey: createPrivateKey(m.caKey), notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000), uris: ['spiffe://cluster.local/ns/shop/sa/frontend'] });
    const file = join(dir, 'foreign.pem');
    writeFileSync(file, `${toPem(der)}${keyPem(k.privateKey)}`, { mode: 0o600 });
    return file;
  }

  it('STRICT: a plaintext client and a client with another CA\'s certificate are refused; the meshed frontend gets in over mTLS', async () => {
    const plain = inNetns('out', ['curl', '-s', '-m', '5', `http://${R}:9080/plain`]);
    expect(plain.code).not.toBe(0);
    const mark = sidecars.ratings.lines.length;
    const foreign = inNetns('out', ['openssl', 's_client', '-connect', `${R}:9080`, '-alpn', 'sockmesh', '-cert', foreignClient()], 'GET / HTTP/1.0\r\n\r\n');
    expect(foreign.out).not.toContain('"server":"ratings"');
    await sidecars.ratings.waitForFrom(mark, (l) => l.event === 'tls-handshake-failed', slow(10_000));
    const from = sidecars.ratings.lines.length;
    expect(await httpLoad('front', '10.96.0.30', 5)).toMatchObject({ requests: 5, failures: 0, statuses: { 200: 5 } });
    await sidecars.ratings.waitFor(() => access('ratings', from).length >= 5, slow(10_000));
    expect(access('ratings', from)[0]).toMatchObject({ direction: 'inbound', tls: true, peer: 'cluster.local/ns/shop/sa/frontend', authz: 'allow:shop/ratings-from-frontend', status: 200 });
  });

  it('explain says a connection will be mTLS, whose identity is verified, and which policy allows or denies it', async () => {
    const ex = async (pod: string, dst: string) => JSON.parse((await runCli(['explain', '--instance', instance, '--pod', pod, dst, '--json'])).stdout) as { security?: { upstreams: Array<Record<string, unknown>> } };
    const front = await ex('front', '10.96.0.31:9081');
    expect(front.security?.upstreams).toEqual([expect.objectContaining({ address: `${R}:9081`, mtls: true, authorization: 'allow (shop/ratings-from-frontend)' })]);
    expect(String(front.security!.upstreams[0].detail)).toMatch(/verifying spiffe:\/\/cluster\.local\/ns\/shop\/sa\/ratings.*STRICT \(shop\/default\)/);
    const other = await ex('other', '10.96.0.31:9081');
    expect(String(other.security?.upstreams[0].authorization)).toMatch(/^deny \(ALLOW policies shop\/ratings-from-frontend/);
  });

  it('an AuthorizationPolicy allowing only ns/shop/sa/frontend: another meshed pod gets 403 (HTTP) and a closed connection (TCP); a DENY beats the ALLOW', async () => {
    expect(await httpLoad('other', '10.96.0.30', 3)).toMatchObject({ statuses: { 403: 3 } });
    const denied = await echo('other');
    expect(denied.reply).toBeUndefined();
    denied.proc.child.stdin!.end();
    const allowed = await echo('front');
    expect(allowed.reply).toMatchObject({ server: 'echo' });
    allowed.proc.child.stdin!.end();
    await save(config('STRICT', ALLOW_FRONTEND + DENY_TCP));
    const now = await echo('front');
    expect(now.reply).toBeUndefined();
    now.proc.child.stdin!.end();
    expect(await httpLoad('front', '10.96.0.30', 3)).toMatchObject({ statuses: { 200: 3 } });
    await sidecars.ratings.waitFor(() => sidecars.ratings.lines.some((l) => l.event === 'access' && l.authz === 'deny:shop/no-echo'), slow(10_000));
    // Paths are decided as the app would resolve them (Istio's normalization): no way around a DENY.
    await save(config('STRICT', ALLOW_FRONTEND + DENY_ADMIN));
    const curl = (path: string) => execFileSync('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', node.pod('front').cgroup, 'ip', 'netns', 'exec', node.pod('front').netns,
      'curl', '-s', '--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', '-m', '5', `http://10.96.0.30:9080${path}`], { encoding: 'utf8' });
    expect(['/admin', '/x/../admin', '//admin', '/./admin/', '/%61dmin'].map(curl)).toEqual(['403', '403', '403', '403', '403']);
    expect(curl('/ok')).toBe('200');
  });

  it('PERMISSIVE takes plaintext and mTLS on the same port and logs which; DISABLE takes plaintext only (no TLS from the frontend either)', async () => {
    await save(config('PERMISSIVE'));
    let from = sidecars.ratings.lines.length;
    const plain = inNetns('out', ['curl', '-s', '-m', '5', `http://${R}:9080/plain`]);
    expect(plain.out).toContain('"server":"ratings"');
    expect(await httpLoad('front', '10.96.0.30', 2)).toMatchObject({ statuses: { 200: 2 } });
    await sidecars.ratings.waitFor(() => access('ratings', from).length >= 3, slow(10_000));
    expect(access('ratings', from).map((l) => l.tls).sort()).toEqual([false, true, true]);
    await save(config('DISABLE'));
    from = sidecars.ratings.lines.length;
    expect(await httpLoad('front', '10.96.0.30', 2)).toMatchObject({ statuses: { 200: 2 } });
    await sidecars.ratings.waitFor(() => access('ratings', from).length >= 2, slow(10_000));
    expect(access('ratings', from).map((l) => l.tls)).toEqual([false, false]);
    const tls = inNetns('out', ['openssl', 's_client', '-connect', `${R}:9080`, '-alpn', 'sockmesh'], '');
    expect(tls.out).not.toContain('BEGIN CERTIFICATE');
  });

  it('a pod\'s key goes to its own sidecar only: not to its app\'s uid, not to a caller outside the pods, never another pod\'s', () => {
    const script = `import { request } from '${join(packageRoot(), 'dist/src/control/client.js')}';
request('/run/sockmesh/${instance}.sock', { op: 'identity', have: '' }, 10000).then((r) => console.log(JSON.stringify({ ok: true, pod: r.pod, spiffeId: r.spiffeId, key: typeof r.key })), (e) => console.log(JSON.stringify({ ok: false, error: e.message })));`;
    // Where uid 1337 and 4000 can read it.
    const file = join(tmpdir(), `sockmesh-${instance}-ask-identity.mjs`);
    writeFileSync(file, script, { mode: 0o644 });
    cleanups.push(() => rmSync(file, { force: true }));
    const ask = (argv: string[]) => JSON.parse(execFileSync(argv[0], argv.slice(1), { encoding: 'utf8' }).trim().split('\n').at(-1)!) as Record<string, unknown>;
    const inPod = (pod: string, pre: string[]) => ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', node.pod(pod).cgroup, 'ip', 'netns', 'exec', node.pod(pod).netns, ...pre, process.execPath, file];
    expect(ask(inPod('other', []))).toMatchObject({ ok: true, pod: 'other', spiffeId: 'spiffe://cluster.local/ns/shop/sa/other', key: 'string' });
    expect(ask(inPod('other', ['setpriv', '--reuid', '1337', '--regid', '1337', '--clear-groups']))).toMatchObject({ ok: true, pod: 'other' });
    expect(ask(inPod('other', ['setpriv', '--reuid', '4000', '--regid', '4000', '--clear-groups']))).toMatchObject({ ok: false, error: expect.stringMatching(/sidecar only.*uid 4000/) });
    expect(ask([process.execPath, file])).toMatchObject({ ok: false, error: expect.stringMatching(/in no meshed pod/) });
    for (const p of Object.keys(PODS) as Pod[]) {
      const st = statSync(join(dir, `run-${p}`, 'pod.pem'));
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.uid).toBe(1337);
    }
  });

  it('keys are never in the agent\'s log, its status or /metrics; status and /metrics show each pod\'s certificate expiry', async () => {
    const st = await runCli(['status', '--instance', instance, '--json']);
    const metrics = await (await fetch(`http://127.0.0.1:${agentPort}/metrics`)).text();
    for (const text of [st.stdout, metrics, agent!.lines.map((l) => JSON.stringify(l)).join('\n'), ...Object.values(sidecars).map((s) => s.lines.map((l) => JSON.stringify(l)).join('\n'))]) {
      expect(text).not.toMatch(/PRIVATE KEY/);
    }
    const ids = (JSON.parse(st.stdout) as { agent: { identities: Array<{ pod: string; spiffeId: string; notAfter: string }> } }).agent.identities;
    expect(ids.map((i) => i.pod).sort()).toEqual(['front', 'other', 'ratings']);
    const text = (await runCli(['status', '--instance', instance])).stdout;
    expect(text).toMatch(/identities .*ratings: spiffe:\/\/cluster\.local\/ns\/shop\/sa\/ratings \(serial [0-9A-F]+, expires /);
    expect(text).not.toMatch(/PRIVATE KEY/);
    expect(metrics).toMatch(/sockmesh_pod_certificate_expiry_timestamp_seconds\{pod="ratings"\} \d+/);
    expect(metrics).toMatch(/sockmesh_ca_root_expiry_timestamp_seconds\{root="0"\} \d+/);
  });

  it('20 renewals under continuous load: no failed request, new handshakes carry the new certificate; an expired one is refused', async () => {
    await save(config('STRICT', ALLOW_FRONTEND, '2s'));
    const renewals = () => sidecars.ratings.lines.filter((l) => l.event === 'identity').length;
    const start = renewals();
    const load = node.spawnNode('front', PEER, ['http-load', '--host', '10.96.0.30', '--port', '9080', '--count', '0'], 'load during renewals');
    const conns = node.spawnNode('front', PEER, ['repeat', '--host', '10.96.0.31', '--port', '9081', '--count', '0'], 'new connections during renewals');
    await sidecars.ratings.waitFor(() => renewals() >= start + 20, slow(90_000));
    conns.child.stdin!.end();
    load.child.stdin!.end();
    const repeated = await conns.waitFor((l) => l.event === 'summary', slow(20_000));
    const done = await load.waitFor((l) => l.event === 'done', slow(20_000));
    expect(repeated.errors).toEqual([]);
    expect(Object.keys(repeated.outcomes as object).every((k) => k.startsWith('echo '))).toBe(true);
    expect(repeated.total as number).toBeGreaterThan(20);
    expect(done.failures).toBe(0);
    expect(Object.keys(done.statuses as object)).toEqual(['200']);
    expect(done.requests as number).toBeGreaterThan(20);
    // A new handshake: the serial the sidecar has now.
    const serial = String(sidecars.ratings.lines.filter((l) => l.event === 'identity').at(-1)!.serial);
    const r = inNetns('out', ['openssl', 's_client', '-connect', `${R}:9080`, '-alpn', 'sockmesh'], '');
    const leaf = new X509Certificate((r.out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/) ?? [''])[0]);
    expect([serial, String(sidecars.ratings.lines.filter((l) => l.event === 'identity').at(-1)!.serial)]).toContain(leaf.serialNumber);
    // An expired certificate of the mesh's own CA (signed by its root) is refused.
    const key = createPrivateKey(readFileSync(join(caDir, 'ca-key.pem')));
    const root = new X509Certificate(readFileSync(join(caDir, 'ca-cert.pem')));
    const k = newKeyPair();
    const der = issue({ subject: {}, publicKey: k.publicKey, issuer: issuerOf(root), signingKey: key, notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000), uris: ['spiffe://cluster.local/ns/shop/sa/frontend'] });
    writeFileSync(join(dir, 'expired.pem'), `${toPem(der)}${keyPem(k.privateKey)}`, { mode: 0o600 });
    const mark = sidecars.ratings.lines.length;
    const expired = inNetns('out', ['openssl', 's_client', '-connect', `${R}:9080`, '-alpn', 'sockmesh', '-cert', join(dir, 'expired.pem')], 'GET / HTTP/1.0\r\n\r\n');
    expect(expired.out).not.toContain('"server":"ratings"');
    const failed = await sidecars.ratings.waitForFrom(mark, (l) => l.event === 'tls-handshake-failed', slow(10_000));
    expect(String(failed.reason)).toMatch(/expired|handshake/i);
  });

  it('a restarted sidecar refuses inbound until the agent says the pod is STRICT: no plaintext request reaches the app meanwhile', async () => {
    // A plaintext client from outside the mesh, over and over, for the whole restart.
    const script = join(tmpdir(), `sockmesh-${instance}-plain-loop.cjs`);
    cleanups.push(() => rmSync(script, { force: true }));
    writeFileSync(script, `const net = require('net');
let ok = 0, tries = 0; const end = Date.now() + Number(process.argv[2]);
(function once() {
  if (Date.now() > end) { console.log(JSON.stringify({ ok, tries })); return; }
  tries++;
  const s = net.connect(9080, '${R}'); let got = '';
  s.on('connect', () => s.write('GET /plain HTTP/1.0\\r\\n\\r\\n'));
  s.on('data', (d) => { got += d; });
  s.on('close', () => { if (got.includes('"server":"ratings"')) ok++; setTimeout(once, 5); });
  s.on('error', () => {});
  s.setTimeout(2000, () => s.destroy());
})();`, { mode: 0o644 });
    const probe = new Proc('plaintext loop', 'ip', ['netns', 'exec', node.pod('out').netns, process.execPath, script, String(slow(8000))]);
    await new Promise((r) => setTimeout(r, 300));
    await sidecars.ratings.kill(10_000);
    sidecars.ratings = node.spawnNode('ratings', CLI, ['sidecar', '--config', cfgPath, '--instance', instance, '--id', 'pod-ratings', '--run-dir', join(dir, 'run-ratings-2'), '--metrics-listen', ''], 'sidecar ratings (restarted)');
    const ready = await sidecars.ratings.waitFor((l) => l.event === 'ready', slow(30_000));
    expect(ready.inbound).toBe('refused until the agent answers');
    await sidecars.ratings.waitFor((l) => l.event === 'policy-applied', slow(30_000));
    const result = await probe.waitFor((l) => typeof l.tries === 'number', slow(30_000));
    expect(result.tries as number).toBeGreaterThan(20);
    expect(result.ok).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    expect(await httpLoad('front', '10.96.0.30', 3)).toMatchObject({ statuses: { 200: 3 } });
  });
});
