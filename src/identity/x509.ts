// X.509 certificates for the mesh CA: the structures are @peculiar/asn1-x509's (the schema layer of
// PeculiarVentures' X.509 library, on the WebCrypto stack), keys and signatures Node's crypto
// (ECDSA P-256, SHA-256). Building the DER through the schema classes directly is ~3× faster than
// the library's high-level generator (measured: 1,000 leaf certificates in ~1.7 s against ~5.5 s
// on this machine), which the agent needs to issue a full node's pods at start.
import { createHash, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier, AttributeTypeAndValue, AttributeValue, AuthorityKeyIdentifier, BasicConstraints, Certificate, ExtendedKeyUsage, Extension,
  Extensions, GeneralName, GeneralSubtree, GeneralSubtrees, KeyIdentifier, KeyUsage, KeyUsageFlags, Name, NameConstraints, RelativeDistinguishedName,
  SubjectAlternativeName, SubjectKeyIdentifier, SubjectPublicKeyInfo, TBSCertificate, Validity, Version, id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints, id_ce_extKeyUsage, id_ce_keyUsage, id_ce_nameConstraints, id_ce_subjectAltName, id_ce_subjectKeyIdentifier,
  id_kp_clientAuth, id_kp_serverAuth,
} from '@peculiar/asn1-x509';

/** ecdsa-with-SHA256 */
const ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID = { O: '2.5.4.10', CN: '2.5.4.3' } as const;

export interface KeyPair { privateKey: KeyObject; publicKey: KeyObject }

export function newKeyPair(): KeyPair {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** A distinguished name of O and CN (either may be left out). */
export function distinguishedName(o: { O?: string; CN?: string }): Name {
  const rdns: RelativeDistinguishedName[] = [];
  for (const k of ['O', 'CN'] as const) {
    const v = o[k];
    if (v !== undefined) rdns.push(new RelativeDistinguishedName([new AttributeTypeAndValue({ type: OID[k], value: new AttributeValue({ utf8String: v }) })]));
  }
  return new Name(rdns);
}

function ext(id: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID: id, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/** The key identifier of a public key: SHA-1 of its DER (RFC 5280 4.2.1.2, method 1 over the SPKI). */
function keyId(spkiDer: Buffer): Buffer {
  return createHash('sha1').update(spkiDer).digest();
}

/** What a certificate's issuer contributes to the certificates it signs: its subject and key id. */
export interface Issuer { name: Name; spkiDer: Buffer }

export function issuerOf(cert: X509Certificate): Issuer {
  return { name: AsnConvert.parse(cert.raw, Certificate).tbsCertificate.subject, spkiDer: cert.publicKey.export({ type: 'spki', format: 'der' }) };
}

export interface CertificateRequest {
  subject: { O?: string; CN?: string };
  publicKey: KeyObject;
  /** The issuer (undefined: self-signed by `signingKey`, whose public key is `publicKey`). */
  issuer?: Issuer;
  signingKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** A CA certificate; pathLen: how many CAs may follow below it. */
  ca?: { pathLen?: number; permittedUris?: string[]; permittedDns?: string[] };
  /** Leaf names. */
  uris?: string[];
  dns?: string[];
  /** Its serial (newSerial's); a new one when absent. */
  serial?: Buffer;
}

/** RFC 5280's Certificate with its tbsCertificate as encoded DER (the schema's Any: embedded as it is). */
class SignedCertificate {
  tbsCertificate = new ArrayBuffer(0);
  signatureAlgorithm = new AlgorithmIdentifier();
  signatureValue = new ArrayBuffer(0);

  static of(tbs: Buffer, signatureAlgorithm: AlgorithmIdentifier, sig: Buffer): SignedCertificate {
    const c = new SignedCertificate();
    c.tbsCertificate = tbs.buffer.slice(tbs.byteOffset, tbs.byteOffset + tbs.length) as ArrayBuffer;
    c.signatureAlgorithm = signatureAlgorithm;
    c.signatureValue = sig.buffer.slice(sig.byteOffset, sig.byteOffset + sig.length) as ArrayBuffer;
    return c;
  }
}
AsnType({ type: AsnTypeTypes.Sequence })(SignedCertificate);
AsnProp({ type: AsnPropTypes.Any })(SignedCertificate.prototype, 'tbsCertificate');
AsnProp({ type: AlgorithmIdentifier })(SignedCertificate.prototype, 'signatureAlgorithm');
AsnProp({ type: AsnPropTypes.BitString })(SignedCertificate.prototype, 'signatureValue');

/**
 * A certificate serial number: 16 random bytes, a positive INTEGER in minimal DER (the top bit
 * clear, never a leading zero byte: OpenSSL refuses the certificate otherwise, 1 in 128 before).
 */
export function newSerial(): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0] & 0x7f) | 0x40;
  return serial;
}

/** A serial as X509Certificate.serialNumber writes it (upper-case hex; newSerial's never starts with 0). */
export function serialHex(serial: Buffer): string {
  return serial.toString('hex').toUpperCase();
}

/** Issues one certificate; returns its DER. */
export function issue(r: CertificateRequest): Buffer {
  const spkiDer = r.publicKey.export({ type: 'spki', format: 'der' });
  const exts: Extension[] = [];
  if (r.ca) {
    exts.push(ext(id_ce_basicConstraints, true, new BasicConstraints({ cA: true, ...(r.ca.pathLen !== undefined ? { pathLenConstraint: r.ca.pathLen } : {}) })));
    exts.push(ext(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature)));
    const permitted = [...(r.ca.permittedUris ?? []).map((u) => new GeneralName({ uniformResourceIdentifier: u })),
      ...(r.ca.permittedDns ?? []).map((d) => new GeneralName({ dNSName: d }))];
    if (permitted.length) {
      exts.push(ext(id_ce_nameConstraints, true, new NameConstraints({ permittedSubtrees: new GeneralSubtrees(permitted.map((base) => new GeneralSubtree({ base }))) })));
    }
  } else {
    exts.push(ext(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })));
    exts.push(ext(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature)));
    exts.push(ext(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth, id_kp_clientAuth])));
  }
  const names = [...(r.uris ?? []).map((u) => new GeneralName({ uniformResourceIdentifier: u })), ...(r.dns ?? []).map((d) => new GeneralName({ dNSName: d }))];
  // A leaf's identity is its subjectAltName alone (the subject is empty): critical, as RFC 5280 asks.
  if (names.length) exts.push(ext(id_ce_subjectAltName, r.subject.CN === undefined && r.subject.O === undefined, new SubjectAlternativeName(names)));
  exts.push(ext(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(keyId(spkiDer))));
  const issuerSpki = r.issuer ? r.issuer.spkiDer : spkiDer;
  exts.push(ext(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(keyId(issuerSpki)) })));
  const serial = r.serial ?? newSerial();
  const sigAlg = new AlgorithmIdentifier({ algorithm: ECDSA_SHA256 });
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: serial.buffer.slice(serial.byteOffset, serial.byteOffset + serial.length) as ArrayBuffer,
    signature: sigAlg,
    issuer: r.issuer ? r.issuer.name : distinguishedName(r.subject),
    validity: new Validity({ notBefore: r.notBefore, notAfter: r.notAfter }),
    subject: distinguishedName(r.subject),
    subjectPublicKeyInfo: AsnConvert.parse(spkiDer, SubjectPublicKeyInfo),
    extensions: new Extensions(exts),
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const signature = sign('sha256', tbsDer, r.signingKey);
  // The signed TBS goes in as the DER it was signed over (serializing it again cost half the time).
  return Buffer.from(AsnConvert.serialize(SignedCertificate.of(tbsDer, sigAlg, signature)));
}

export function toPem(der: Buffer, label = 'CERTIFICATE'): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
}

/** The certificates of a PEM bundle, in order. */
export function certificatesOf(pem: string): X509Certificate[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));
}

export function keyPem(k: KeyObject): string {
  return k.export({ type: 'pkcs8', format: 'pem' }) as string;
}

