// The mesh CA's material in a Kubernetes Secret (the Kubernetes source's CaStore), under Istio's
// plug-in CA names: a Secret `cacerts` with root-cert.pem, ca-cert.pem, ca-key.pem, cert-chain.pem
// in the agent's namespace. When there is none, the first agent to look makes a self-signed root
// and creates the Secret (create-if-absent); an agent that finds it created meanwhile (409) reads
// it: every node ends on the same root.
import type { KubeConfig } from '@kubernetes/client-node';
import { Codes, SockmeshError } from '../../errors.js';
import { selfSignedRoot, type CaMaterial, type CaStore } from '../../identity/ca.js';
import { apiRequest } from './client.js';

const KEYS = { rootCerts: 'root-cert.pem', caCert: 'ca-cert.pem', caKey: 'ca-key.pem', certChain: 'cert-chain.pem' } as const;

export class SecretCaStore implements CaStore {
  constructor(private readonly kc: KubeConfig, private readonly namespace: string, private readonly name = 'cacerts',
    private readonly onCreated: (where: string) => void = () => undefined) {}

  get description(): string {
    return `Secret ${this.namespace}/${this.name}`;
  }

  private get path(): string {
    return `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/secrets`;
  }

  async load(trustDomain: string): Promise<CaMaterial> {
    const found = await this.read();
    if (found) return found;
    const m = selfSignedRoot(trustDomain);
    const data = Object.fromEntries(Object.entries(KEYS).map(([k, file]) => [file, Buffer.from(m[k as keyof CaMaterial]).toString('base64')]));
    const r = await apiRequest(this.kc, this.path, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: this.name, namespace: this.namespace, labels: { 'app.kubernetes.io/name': 'sockmesh' } }, data }),
    });
    if (r.status === 201 || r.status === 200) {
      this.onCreated(this.description);
      return m;
    }
    // Another agent created it first: its root is the mesh's.
    if (r.status === 409) {
      const theirs = await this.read();
      if (theirs) return theirs;
    }
    throw new SockmeshError(Codes.SYSCALL, `${this.description}: cannot create it (HTTP ${r.status}${r.status === 403 ? ': the agent needs create on secrets in its namespace, see deploy/rbac.yaml' : ''})`);
  }

  private async read(): Promise<CaMaterial | undefined> {
    const r = await apiRequest(this.kc, `${this.path}/${encodeURIComponent(this.name)}`);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new SockmeshError(Codes.SYSCALL, `${this.description}: HTTP ${r.status}${r.status === 403 ? ' (the agent needs get on secrets in its namespace, see deploy/rbac.yaml)' : ''}`);
    const data = ((r.body as { data?: Record<string, string> }).data) ?? {};
    const text = (file: string) => (data[file] === undefined ? '' : Buffer.from(data[file], 'base64').toString('utf8'));
    for (const file of [KEYS.rootCerts, KEYS.caCert, KEYS.caKey]) {
      if (!data[file]) throw new SockmeshError(Codes.CONFIG_INVALID, `${this.description} has no ${file}: a CA Secret needs root-cert.pem, ca-cert.pem and ca-key.pem (cert-chain.pem for an intermediate), Istio's plug-in CA names`);
    }
    return { rootCerts: text(KEYS.rootCerts), caCert: text(KEYS.caCert), caKey: text(KEYS.caKey), certChain: text(KEYS.certChain) };
  }
}
