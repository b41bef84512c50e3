// The mesh CA in the agent. Its material follows Istio's plug-in CA layout (root-cert.pem: the
// trust bundle, one root or two during a rotation; ca-cert.pem / ca-key.pem: the signing CA;
// cert-chain.pem: from the signing CA up to the root). Where the signing CA is the root itself
// (a self-signed mesh, as istiod makes one), the agent signs a per-node intermediate with it and
// keeps only that: the root key is read again only to renew the intermediate. Pod certificates are
// ECDSA P-256 leaves with the SPIFFE ID as URI SAN (and its DNS form, see dnsIdOf), chained to it.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { Codes, SockmeshError } from '../errors.js';
import { certificatesOf, issue, issuerOf, keyPem, newKeyPair, newSerial, serialHex, toPem, type Issuer } from './x509.js';

/** What a CA store holds (PEM texts). */
export interface CaMaterial {
  rootCerts: string;
  caCert: string;
  caKey: string;
  certChain: string;
}

/** Where the material lives: a directory (file source) or a Kubernetes Secret. */
export interface CaStore {
  readonly description: string;
  /** The material, made (a self-signed root) when there is none. */
  load(trustDomain: string): Promise<CaMaterial>;
}

/** A new self-signed root for a trust domain (10 years, as istiod's self-signed CA). */
export function selfSignedRoot(trustDomain: string, now = new Date()): CaMaterial {
  const k = newKeyPair();
  const der = issue({
    subject: { O: trustDomain, CN: `sockmesh root ${trustDomain}` }, publicKey: k.publicKey, signingKey: k.privateKey,
    notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + 10 * 365 * 86400_000), ca: {},
  });
  const pem = toPem(der);
  return { rootCerts: pem, caCert: pem, caKey: keyPem(k.privateKey), certChain: pem };
}

export interface PodCertificate {
  /** The leaf, then the chain up to (not including) the root. */
  certChain: string;
  key: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

interface Signer { cert: X509Certificate; issuer: Issuer; key: KeyObject; chain: string; notAfter: Date }

function isSelfSigned(c: X509Certificate): boolean {
  return c.subject === c.issuer && c.verify(c.publicKey);
}

export class MeshCA {
  private signer: Signer | undefined;
  private rootsPem = '';
  private roots: X509Certificate[] = [];

  constructor(private readonly store: CaStore, private readonly trustDomain: string, private readonly node: string) {}

  get description(): string {
    return this.store.description;
  }

  /** The trust bundle every sidecar verifies peers against. */
  trustBundle(): string {
    return this.rootsPem;
  }

  /** When each root expires. */
  rootExpiry(): Date[] {
    return this.roots.map((r) => new Date(r.validTo));
  }

  /** When the certificate that signs pod certificates expires (a per-node intermediate, or the plug-in CA). */
  signerExpiry(): Date | undefined {
    return this.signer?.notAfter;
  }

  /**
   * Reads the store, and signs this node's intermediate when the signing CA is a root: valid for
   * 7 days (at least four pod certificate lifetimes), constrained to the trust domain's names.
   */
  async refresh(leafTtlMs: number, now = new Date()): Promise<void> {
    const m = await this.store.load(this.trustDomain);
    const roots = certificatesOf(m.rootCerts);
    if (!roots.length) throw new SockmeshError(Codes.CONFIG_INVALID, `${this.store.description}: root-cert.pem holds no certificate`);
    const [ca] = certificatesOf(m.caCert);
    if (!ca) throw new SockmeshError(Codes.CONFIG_INVALID, `${this.store.description}: ca-cert.pem holds no certificate`);
    let key: KeyObject;
    try {
      key = createPrivateKey(m.caKey);
    } catch (cause) {
      throw new SockmeshError(Codes.CONFIG_INVALID, `${this.store.description}: ca-key.pem is not a private key`, { cause });
    }
    if (!ca.checkPrivateKey(key)) throw new SockmeshError(Codes.CONFIG_INVALID, `${this.store.description}: ca-key.pem is not the key of ca-cert.pem`);
    if (!ca.ca) throw new SockmeshError(Codes.CONFIG_INVALID, `${this.store.description}: ca-cert.pem is not a CA certificate`);
    this.roots = roots;
    this.rootsPem = roots.map((r) => toPem(Buffer.from(r.raw))).join('');
    if (!isSelfSigned(ca)) {
      // A plug-in intermediate: this node signs with it as it is (it holds no more than that).
      this.signer = { cert: ca, issuer: issuerOf(ca), key, chain: chainBelowRoot(m.certChain || m.caCert, roots), notAfter: new Date(ca.validTo) };
      return;
    }
    const k = newKeyPair();
    const life = Math.max(7 * 86400_000, 4 * leafTtlMs);
    const notAfter = new Date(Math.min(now.getTime() + life, new Date(ca.validTo).getTime()));
    const der = issue({
      subject: { O: this.trustDomain, CN: `sockmesh node ${this.node}` }, publicKey: k.publicKey, issuer: issuerOf(ca), signingKey: key,
      notBefore: new Date(now.getTime() - 60_000), notAfter,
      ca: { pathLen: 0, permittedUris: [this.trustDomain], permittedDns: [this.trustDomain] },
    });
    const cert = new X509Certificate(der);
    this.signer = { cert, issuer: issuerOf(cert), key: k.privateKey, chain: toPem(der), notAfter };
  }

  /** Whether the signer should be renewed now (past half of its life, or gone). */
  needsRefresh(now = new Date()): boolean {
    if (!this.signer) return true;
    const from = new Date(this.signer.cert.validFrom).getTime();
    return now.getTime() > from + (this.signer.notAfter.getTime() - from) / 2;
  }

  /** A pod certificate for this identity, valid for ttlMs (never past the signer's own end). */
  issue(spiffeId: string, dnsId: string, ttlMs: number, now = new Date()): PodCertificate {
    const s = this.signer;
    if (!s) throw new SockmeshError(Codes.INTERNAL, 'the mesh CA has not been loaded');
    const k = newKeyPair();
    const notBefore = new Date(now.getTime() - 60_000); // clocks of two nodes a little apart
    const notAfter = new Date(Math.min(now.getTime() + ttlMs, s.notAfter.getTime()));
    const serial = newSerial();
    const der = issue({ subject: {}, publicKey: k.publicKey, issuer: s.issuer, signingKey: s.key, notBefore, notAfter, uris: [spiffeId], dns: [dnsId], serial });
    return { certChain: `${toPem(der)}${s.chain}`, key: keyPem(k.privateKey), serial: serialHex(serial), notBefore, notAfter };
  }
}

/** The PEM chain from the signing CA up to, not including, the roots. */
function chainBelowRoot(chainPem: string, roots: X509Certificate[]): string {
  const fingerprints = new Set(roots.map((r) => r.fingerprint256));
  return certificatesOf(chainPem).filter((c) => !fingerprints.has(c.fingerprint256)).map((c) => toPem(Buffer.from(c.raw))).join('');
}
