// The stand-in API server's vocabulary: the resources it serves (kind, group version, path), the
// shapes it keeps, its Status errors and JSON answers, and a kubeconfig that points at it.
import type { IncomingMessage, ServerResponse } from 'node:http';

export type Resource = 'pods' | 'services' | 'endpointslices' | 'destinationrules' | 'virtualservices' | 'peerauthentications' | 'authorizationpolicies';
export const ISTIO: readonly Resource[] = ['destinationrules', 'virtualservices', 'peerauthentications', 'authorizationpolicies'];

export interface Obj {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string; [k: string]: unknown };
  spec?: { nodeName?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export const KINDS: Record<Resource, { kind: string; apiVersion: string; path: RegExp }> = {
  pods: { kind: 'Pod', apiVersion: 'v1', path: /^\/api\/v1\/pods$/ },
  services: { kind: 'Service', apiVersion: 'v1', path: /^\/api\/v1\/services$/ },
  endpointslices: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', path: /^\/apis\/discovery\.k8s\.io\/v1\/endpointslices$/ },
  destinationrules: { kind: 'DestinationRule', apiVersion: 'networking.istio.io/v1', path: /^\/apis\/networking\.istio\.io\/v1\/destinationrules$/ },
  virtualservices: { kind: 'VirtualService', apiVersion: 'networking.istio.io/v1', path: /^\/apis\/networking\.istio\.io\/v1\/virtualservices$/ },
  peerauthentications: { kind: 'PeerAuthentication', apiVersion: 'security.istio.io/v1', path: /^\/apis\/security\.istio\.io\/v1\/peerauthentications$/ },
  authorizationpolicies: { kind: 'AuthorizationPolicy', apiVersion: 'security.istio.io/v1', path: /^\/apis\/security\.istio\.io\/v1\/authorizationpolicies$/ },
};
export const RESOURCES = Object.keys(KINDS) as Resource[];
export const perResource = <T>(make: () => T): Record<Resource, T> => Object.fromEntries(RESOURCES.map((r) => [r, make()])) as Record<Resource, T>;

export interface Change {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: Resource;
  object: Obj;
}

export interface Watcher {
  resource: Resource;
  res: ServerResponse;
  node?: string;
  bookmarks: boolean;
  timer?: NodeJS.Timeout;
}

export function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

export function json(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** A kubeconfig for the fake server: plain HTTP, or HTTPS trusting `ca` (PEM); a bearer token. */
export function kubeconfigYaml(url: string, auth: { ca?: string; token?: string } = {}): string {
  const cluster = auth.ca ? `certificate-authority-data: ${Buffer.from(auth.ca).toString('base64')}` : 'insecure-skip-tls-verify: true';
  return `apiVersion: v1
kind: Config
clusters:
  - name: fake
    cluster: { server: "${url}", ${cluster} }
users:
  - name: fake
    user: ${auth.token ? `{ token: "${auth.token}" }` : '{}'}
contexts:
  - name: fake
    context: { cluster: fake, user: fake }
current-context: fake
`;
}

/** A request's JSON body, once it has all arrived. */
export function readJson(req: IncomingMessage, then: (o: Obj) => void): void {
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', () => then(JSON.parse(body) as Obj));
}
