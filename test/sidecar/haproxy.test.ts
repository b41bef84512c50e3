// The governance sidecar's HAProxy configuration, rendered from the config: what each policy field
// becomes, and HAProxy itself (`haproxy -c`) accepting the result.
import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { workloadPolicy } from '../../src/config/workload.js';
import { selfSignedRoot } from '../../src/identity/ca.js';
import { issue, issuerOf, keyPem, newKeyPair, toPem } from '../../src/identity/x509.js';
import { renderHaproxy } from '../../src/sidecar/haproxy.js';
import { renderLua } from '../../src/sidecar/security.js';

const CONFIG = `
services:
  - name: ratings
    addresses: [10.96.0.30]
    ports: [9080]
    protocol: http
    endpoints: [10.0.0.11:9080, { address: 10.0.0.12:9080, weight: 3 }]
    policy:
      loadBalancer: LEAST_REQUEST
      timeout: 1s
      retries: { attempts: 2, perTryTimeout: 300ms, retryOn: 'connect-failure,5xx' }
      outlierDetection: { consecutive5xxErrors: 5, interval: 5s, baseEjectionTime: 30s }
      connectionPool: { tcp: { maxConnections: 1000 } }
      rateLimit: { requestsPerSecond: 100, burst: 20 }
  - { name: db, addresses: [10.96.0.31], ports: [5432], endpoints: [10.0.0.21], policy: { timeout: 2s } }
  - { name: plain, addresses: [10.96.0.32], ports: [80] }
  # Endpoints that keep the connection's port (as a Kubernetes Service's are): checked on the first port.
  - { name: reviews, addresses: [10.96.0.33], ports: [9080, 9081], protocol: http, endpoints: [10.0.0.31, 10.0.0.32], policy: { outlierDetection: { consecutive5xxErrors: 2 } } }
`;

describe('HAProxy configuration from the policy', () => {
  const cfg = parseConfigText(CONFIG, 't');
  const text = renderHaproxy(cfg, { sidecar: cfg.sidecar, runDir: '/run/x', version: '7', dropPrivileges: true });

  it('routes each governed service by its original destination, everything else passes through', () => {
    expect(text).toContain('  use_backend out_ratings if { dst_port 9080 } { dst 10.96.0.30 }');
    expect(text).toContain('  use_backend out_db if { dst_port 5432 } { dst 10.96.0.31 }');
    expect(text).not.toContain('out_plain'); // no endpoints, no policy: the original destination
    expect(text).toMatch(/backend passthrough\n {2}mode tcp\n.*\n {2}server orig 0\.0\.0\.0:0/);
    expect(text).toContain('# sockmesh governance sidecar, policy version 7');
  });

  it('turns DestinationRule and VirtualService fields into HAProxy directives', () => {
    const ratings = text.slice(text.indexOf('\nbackend out_ratings'), text.indexOf('\nbackend out_db'));
    expect(ratings).toContain('  mode http');
    expect(ratings).toContain('  balance leastconn');
    expect(ratings).toContain('  timeout server 300ms'); // per try
    expect(ratings).toContain('  retries 2');
    expect(ratings).toContain('  retry-on conn-failure 500 501 502 503 504');
    expect(ratings).toContain('  server ep-10.0.0.11-9080 10.0.0.11:9080 weight 1 maxconn 1000 check inter 5000 downinter 30000 rise 1 fall 1 observe layer7 error-limit 5 on-error mark-down');
    expect(ratings).toMatch(/server ep-10\.0\.0\.12-9080 10\.0\.0\.12:9080 weight 3 /);
    expect(ratings).toMatch(/set-header traceparent 00-.* if !\{ req\.hdr\(traceparent\) -m found \}/);
    const db = text.slice(text.indexOf('\nbackend out_db') + 1);
    expect(db).toMatch(/^backend out_db\n {2}mode tcp\n {2}balance roundrobin\n {2}timeout server 2000ms\n {2}server ep-10\.0\.0\.21-0 10\.0\.0\.21 weight 1\n/);
  });

  it('puts the rules that name an address before any-address ones, outbound and inbound (first match wins in HAProxy)', () => {
    const c = parseConfigText(`
services:
  - { name: anyport, ports: [9080], protocol: http, endpoints: [10.0.0.41:9080] }
  - { name: specific, addresses: [10.96.0.60], ports: [9080], protocol: http, endpoints: [10.0.0.42:9080] }
`, 't');
    const t = renderHaproxy(c, { sidecar: c.sidecar, runDir: '/run/x', version: '1', dropPrivileges: false });
    const rules = t.split('\n').filter((l) => l.includes('use_backend'));
    expect(rules).toEqual([
      '  use_backend out_specific if { dst_port 9080 } { dst 10.96.0.60 }',
      '  use_backend out_anyport if { dst_port 9080 }',
      '  use_backend in_anyport if { dst_port 9080 } { dst 10.0.0.41 }',
      '  use_backend in_specific if { dst_port 9080 } { dst 10.0.0.42 }',
    ]);
  });

  it('rate-limits HTTP services on the inbound listener and passes on from 127.0.0.6', () => {
    expect(text).toContain('  use_backend in_ratings if { dst_port 9080 } { dst 10.0.0.11 10.0.0.12 }');
    const inb = text.slice(text.indexOf('\nbackend in_ratings'));
    expect(inb).toContain('  http-request deny deny_status 429 if { sc_gpc0_rate(0) ge 120 }');
    expect(inb).toContain('  http-request sc-inc-gpc0(0)');
    expect(inb).toContain('  server app 0.0.0.0:0 source 127.0.0.6');
  });

  it('renders the golden file (a diff of testdata/haproxy.cfg shows what a change does to users\' HAProxy)', async () => {
    await expect(text).toMatchFileSnapshot('./testdata/haproxy.cfg');
  });

  it('is a configuration HAProxy accepts', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sockmesh-haproxy-'));
    try {
      const file = join(dir, 'haproxy.cfg');
      writeFileSync(file, renderHaproxy(cfg, { sidecar: cfg.sidecar, runDir: dir, version: '1', dropPrivileges: false }));
      const out = execFileSync('haproxy', ['-c', '-f', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(out).toMatch(/Configuration file is valid/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('HAProxy configuration with the workload\'s security (mTLS, authorization)', () => {
  const mesh = parseConfigText(`${CONFIG}
pods:
  - { name: r1, cgroup: r1, netns: r1, namespace: shop, serviceAccount: ratings, labels: { app: ratings } }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: ratings, namespace: shop }
spec: { selector: { matchLabels: { app: ratings } }, mtls: { mode: STRICT }, portLevelMtls: { "5432": { mode: PERMISSIVE }, "8080": { mode: DISABLE } } }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ratings, namespace: shop }
spec:
  selector: { matchLabels: { app: ratings } }
  rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/front*'] } }], to: [{ operation: { methods: [GET] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: odd-paths, namespace: shop }
spec:
  action: DENY
  # Bytes Lua must see as they are: a decimal escape followed by a digit once read as another byte.
  rules: [{ to: [{ operation: { paths: ['/files/%2F*', '/a=1', '/q?1', '/caf\u00e9', '/t\t1'] } }] }]
`, 't');
  // This pod (ratings) calls the endpoint 10.0.0.11 (a meshed pod elsewhere, PERMISSIVE) with mTLS.
  const local = [{ name: 'r1', addresses: ['10.0.0.50'], namespace: 'shop', serviceAccount: 'ratings', labels: { app: 'ratings' } }];
  const withPeers = { ...mesh, peers: [{ addresses: ['10.0.0.11'], namespace: 'shop', serviceAccount: 'reviews', labels: {} }] };
  const workload = workloadPolicy(withPeers, local, local[0]);
  const render = (dir: string) => {
    const sec = { workload, certFile: `${dir}/pod.pem`, rootsFile: `${dir}/roots.pem`, luaFile: `${dir}/policy.lua`, mtlsSocket: `${dir}/mtls/in.sock`, uid: 1337 };
    return { sec, text: renderHaproxy(mesh, { sidecar: mesh.sidecar, runDir: dir, version: '7', dropPrivileges: true, security: sec }) };
  };

  it('renders the golden file', async () => {
    await expect(render('/run/x').text).toMatchFileSnapshot('./testdata/haproxy-mtls.cfg');
  });

  it('STRICT ports refuse what is not mesh mTLS, PERMISSIVE and DISABLE ports do not; the endpoint that is a meshed workload gets TLS with its identity', () => {
    const { text } = render('/run/x');
    expect(text).toContain('  tcp-request content set-var(sess.sm_tls) str(mtls) if { req.ssl_hello_type 1 } { req.ssl_alpn -m str sockmesh } !{ dst_port 8080 }');
    expect(text).toContain('  tcp-request content reject if !{ var(sess.sm_tls) -m str mtls } !{ dst_port 5432 8080 }');
    expect(text).toMatch(/server ep-10\.0\.0\.11-9080 10\.0\.0\.11:9080 .* ssl crt \/run\/x\/pod\.pem ca-file \/run\/x\/roots\.pem verify required verifyhost reviews\.sa\.shop\.ns\.cluster\.local alpn sockmesh/);
    expect(text).not.toMatch(/server ep-10\.0\.0\.12-9080 .* ssl/);
    expect(text).toContain('  http-request deny deny_status 403 if { var(txn.sm_authz) -m beg deny }');
  });

  it('writes every byte of a policy value into the Lua as it is (three-digit escapes)', () => {
    const lua = renderLua({ workload, rootsFile: '', luaFile: '', mtlsSocket: '' });
    expect(lua).toContain('"/files/\\0372F*"');
    expect(lua).toContain('"/a\\0611"');
    expect(lua).toContain('"/t\\0091"');
    expect(lua).toContain('"/caf\\195\\169"');
  });

  it('is a configuration HAProxy accepts, with its certificate and its Lua', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sockmesh-haproxy-'));
    try {
      const root = selfSignedRoot('cluster.local');
      const leaf = (() => {
        const k = newKeyPair();
        const der = issue({ subject: {}, publicKey: k.publicKey, issuer: issuerOf(new X509Certificate(root.caCert)), signingKey: createPrivateKey(root.caKey),
          notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000), uris: [workload.spiffeId] });
        return `${toPem(der)}${keyPem(k.privateKey)}`;
      })();
      mkdirSync(join(dir, 'mtls'));
      writeFileSync(join(dir, 'pod.pem'), leaf);
      writeFileSync(join(dir, 'roots.pem'), root.rootCerts);
      const { sec, text } = render(dir);
      writeFileSync(sec.luaFile, renderLua(sec));
      const file = join(dir, 'haproxy.cfg');
      writeFileSync(file, text.replace(/^ {2}(uid|gid) \d+\n/gm, '').replace(' uid 1337', ''));
      const out = execFileSync('haproxy', ['-c', '-f', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(out).toMatch(/Configuration file is valid/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
