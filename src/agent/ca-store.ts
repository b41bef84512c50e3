// Where the agent's mesh CA material lives: the config's caDir (file source), or the Secret
// `cacerts` in the agent's namespace (Kubernetes source: one root for every node, made by the first
// agent that finds none). The Kubernetes client is loaded only when the CA is.
import { existsSync, readFileSync } from 'node:fs';
import type { IdentityConfig } from '../config/model.js';
import type { CaStore } from '../identity/ca.js';
import { FileCaStore } from '../identity/file-store.js';
import type { Logger } from '../util/log.js';

const SA_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The agent's own namespace: SOCKMESH_NAMESPACE (the DaemonSet sets it), else its service account's, else sockmesh-system. */
export function agentNamespace(env = process.env, saFile = SA_NAMESPACE): string {
  if (env.SOCKMESH_NAMESPACE) return env.SOCKMESH_NAMESPACE;
  if (existsSync(saFile)) return readFileSync(saFile, 'utf8').trim() || 'sockmesh-system';
  return 'sockmesh-system';
}

export function caStoreFor(identity: IdentityConfig, log: Logger, kubernetes?: { kubeconfig?: string }): CaStore {
  if (!kubernetes) {
    return new FileCaStore(identity.caDir, (dir) => log.warn({ dir }, 'no mesh CA there: made a self-signed root (root-cert.pem, ca-key.pem readable by root only)'));
  }
  const namespace = agentNamespace();
  return {
    description: `Secret ${namespace}/cacerts`,
    async load(trustDomain) {
      const [{ SecretCaStore }, { loadKubeConfig }] = await Promise.all([import('../sources/kubernetes/ca-secret.js'), import('../sources/kubernetes/client.js')]);
      return new SecretCaStore(loadKubeConfig(kubernetes.kubeconfig), namespace, 'cacerts',
        (where) => log.warn({ secret: where }, 'no mesh CA in the cluster: made a self-signed root and created the Secret')).load(trustDomain);
    },
  };
}
