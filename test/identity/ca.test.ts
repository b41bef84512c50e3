// The mesh CA (src/identity): pod certificates that real openssl verifies against the root and
// nothing else, the per-node intermediate's limits (path length 0, names of the trust domain only:
// openssl refuses a leaf it signed for another trust domain), a plug-in intermediate used as it
// is, and the CA directory's rules (made when empty, partial or readable keys refused).
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MeshCA, selfSignedRoot, type CaMaterial } from '../../src/identity/ca.js';
import { FileCaStore } from '../../src/identity/file-store.js';
import { certificatesOf, issue, issuerOf, keyPem, newKeyPair, toPem } from '../../src/identity/x509.js';

const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const memory = (m: CaMaterial) => ({ description: 'memory', load: async () => m });

/** openssl verify of a leaf (with its chain below the root) against a bundle; its output. */
function verify(roots: string, certChain: string): { ok: boolean; out: string } {
  const [leaf, ...chain] = certificatesOf(certChain).map((c) => toPem(Buffer.from(c.raw)));
  const f = (name: string, text: string) => { const p = join(dir, `${name}-${process.hrtime.bigint()}.pem`); writeFileSync(p, text); return p; };
  const args = ['verify', '-CAfile', f('roots', roots), ...(chain.length ? ['-untrusted', f('chain', chain.join(''))] : []), f('leaf', leaf)];
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

describe('the mesh CA', () => {
  it('issues ECDSA P-256 pod certificates with the SPIFFE ID as URI SAN, chained to the root through a per-node intermediate', async () => {
    const ca = new MeshCA(memory(selfSignedRoot('cluster.local')), 'cluster.local', 'node-1');
    await ca.refresh(24 * 3600_000);
    const c = ca.issue('spiffe://cluster.local/ns/shop/sa/ratings', 'ratings.sa.shop.ns.cluster.local', 24 * 3600_000);
    const [leaf, intermediate] = certificatesOf(c.certChain);
    expect(leaf.subjectAltName).toContain('URI:spiffe://cluster.local/ns/shop/sa/ratings');
    expect(leaf.subjectAltName).toContain('DNS:ratings.sa.shop.ns.cluster.local');
    expect(leaf.publicKey.asymmetricKeyDetails).toMatchObject({ namedCurve: 'prime256v1' });
    expect(leaf.ca).toBe(false);
    expect(intermediate.ca).toBe(true);
    expect(intermediate.subject).toContain('node-1');
    expect(leaf.checkPrivateKey(createPrivateKey(c.key))).toBe(true);
    expect(Date.parse(leaf.validTo) - Date.now()).toBeGreaterThan(23.9 * 3600_000);
    expect(Date.parse(leaf.validTo) - Date.now()).toBeLessThanOrEqual(24 * 3600_000);
    expect(c.serial).toBe(leaf.serialNumber);
    expect(verify(ca.trustBundle(), c.certChain)).toMatchObject({ ok: true });
    // Against another mesh's root: refused.
    expect(verify(selfSignedRoot('cluster.local').rootCerts, c.certChain).ok).toBe(false);
  });

  it('the node\'s intermediate signs nothing outside the trust domain, and no CA below it', async () => {
    const ca = new MeshCA(memory(selfSignedRoot('cluster.local')), 'cluster.local', 'node-1');
    await ca.refresh(3600_000);
    const good = ca.issue('spiffe://cluster.local/ns/a/sa/b', 'b.sa.a.ns.cluster.local', 3600_000);
    const evil = ca.issue('spiffe://other.domain/ns/a/sa/b', 'b.sa.a.ns.other.domain', 3600_000);
    expect(verify(ca.trustBundle(), good.certChain).ok).toBe(true);
    const r = verify(ca.trustBundle(), evil.certChain);
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/permitted subtree violation|name constraint/i);
    const [, intermediate] = certificatesOf(good.certChain);
    expect(spawnSync('openssl', ['x509', '-noout', '-ext', 'basicConstraints'], { input: toPem(Buffer.from(intermediate.raw)), encoding: 'utf8' }).stdout).toMatch(/CA:TRUE, pathlen:0/);
  });

  it('signs with a plug-in intermediate as it is (the node never sees the root key); a bundle may hold two roots', async () => {
    const root = selfSignedRoot('cluster.local');
    const rootCert = new X509Certificate(root.caCert);
    const k = newKeyPair();
    const inter = toPem(issue({ subject: { O: 'cluster.local', CN: 'plug-in' }, publicKey: k.publicKey, issuer: issuerOf(rootCert), signingKey: createPrivateKey(root.caKey),
      notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 30 * 86400_000), ca: { pathLen: 0 } }));
    const next = selfSignedRoot('cluster.local');
    const ca = new MeshCA(memory({ rootCerts: root.rootCerts + next.rootCerts, caCert: inter, caKey: keyPem(k.privateKey), certChain: inter + root.caCert }), 'cluster.local', 'node-1');
    await ca.refresh(3600_000);
    expect(ca.rootExpiry()).toHaveLength(2);
    const c = ca.issue('spiffe://cluster.local/ns/a/sa/b', 'b.sa.a.ns.cluster.local', 3600_000);
    const chain = certificatesOf(c.certChain);
    expect(chain).toHaveLength(2);
    expect(chain[1].fingerprint256).toBe(new X509Certificate(inter).fingerprint256);
    expect(verify(ca.trustBundle(), c.certChain).ok).toBe(true);
    expect(ca.signerExpiry()?.getTime()).toBe(Date.parse(new X509Certificate(inter).validTo));
  });

  it('refuses a key that is not the CA certificate\'s, and a leaf certificate as the CA', async () => {
    const a = selfSignedRoot('cluster.local');
    const b = selfSignedRoot('cluster.local');
    await expect(new MeshCA(memory({ ...a, caKey: b.caKey }), 'cluster.local', 'n').refresh(3600_000)).rejects.toThrow(/not the key of ca-cert.pem/);
    const ca = new MeshCA(memory(a), 'cluster.local', 'n');
    await ca.refresh(3600_000);
    const leaf = ca.issue('spiffe://cluster.local/ns/a/sa/b', 'b.sa.a.ns.cluster.local', 3600_000);
    const leafPem = toPem(Buffer.from(certificatesOf(leaf.certChain)[0].raw));
    await expect(new MeshCA(memory({ ...a, caCert: leafPem, caKey: leaf.key }), 'cluster.local', 'n').refresh(3600_000)).rejects.toThrow(/not a CA certificate/);
  });
});

describe('the CA directory (Istio\'s plug-in CA files)', () => {
  it('gets a self-signed root when empty: the key 0600, the directory 0700; read back the same next time', async () => {
    const ca = join(dir, 'ca-new');
    let made = '';
    const m = await new FileCaStore(ca, (d) => { made = d; }).load('cluster.local');
    expect(made).toBe(ca);
    expect(statSync(join(ca, 'ca-key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(ca).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(ca, 'root-cert.pem'), 'utf8')).toBe(m.rootCerts);
    const again = await new FileCaStore(ca).load('cluster.local');
    expect(again.caKey).toBe(m.caKey);
  });

  it('names the missing file of a partial directory, and refuses a key other users can read', async () => {
    const ca = join(dir, 'ca-partial');
    await new FileCaStore(ca).load('cluster.local');
    rmSync(join(ca, 'ca-key.pem'));
    await expect(new FileCaStore(ca).load('cluster.local')).rejects.toThrow(/not ca-key.pem/);
    const open = join(dir, 'ca-open');
    await new FileCaStore(open).load('cluster.local');
    chmodSync(join(open, 'ca-key.pem'), 0o644);
    await expect(new FileCaStore(open).load('cluster.local')).rejects.toThrow(/can be read by other users.*chmod 600/);
  });
});

describe('serial numbers', () => {
  it('are positive and minimal DER in every certificate (OpenSSL parses 2,000 in a row)', async () => {
    const ca = new MeshCA(memory(selfSignedRoot('cluster.local')), 'cluster.local', 'n');
    await ca.refresh(3600_000);
    const serials = new Set<string>();
    for (let i = 0; i < 2000; i++) serials.add(ca.issue(`spiffe://cluster.local/ns/a/sa/s${i}`, `s${i}.sa.a.ns.cluster.local`, 3600_000).serial);
    expect(serials.size).toBe(2000);
  });
});
