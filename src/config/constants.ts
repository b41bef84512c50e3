// The model's constants: defaults, limits and the values each field may take. Validation, the
// Kubernetes translation and the renderers read them here.
import type { IdentityConfig, LoadBalancer, MtlsMode, SidecarConfig, SpliceMode } from './model.js';

/** Ports Istio never captures inbound (HBONE, Prometheus, health, agent). */
export const ISTIO_INBOUND_EXCLUDED = [15008, 15090, 15021, 15020];

/** Service and pod names: lower-case DNS subdomains (`reviews`, or `reviews.bookinfo` as the
 * Kubernetes source names a Service: name.namespace). */
export const NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
export const NAME_MAX = 253;

export const SPLICE_MODES: readonly SpliceMode[] = ['auto', 'always', 'never'];
export const LOAD_BALANCERS: readonly LoadBalancer[] = ['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM'];

/** Istio's retryOn conditions the sidecar can honour (HAProxy retry-on). */
export const RETRY_ON = ['connect-failure', 'refused-stream', 'reset', '5xx', 'gateway-error', 'retriable-status-codes'] as const;

export const UID_MAX = 0xfffffffe;

/** Default of spliceQueueBytes: 4 MiB per spliced socket, within what one TCP flow may hold (see bpf/include/redirect.h). */
export const SPLICE_QUEUE_DEFAULT = 4 * 1024 * 1024;

export const SIDECAR_DEFAULTS: SidecarConfig = { uid: 1337, gid: 1337, address: '127.0.0.1', outboundPort: 15001, inboundPort: 15006 };

/** At most this many endpoints per service: the Maglev table (1,021 slots) stays within ~3 % of even. */
export const ENDPOINTS_MAX = 64;

/** How an endpoint is written: address:port, or the address alone when it keeps the connection's port. */
export function endpointName(e: { address: string; port: number }): string {
  return e.port ? `${e.address}:${e.port}` : e.address;
}

export const MTLS_MODES: readonly MtlsMode[] = ['STRICT', 'PERMISSIVE', 'DISABLE'];

/** The identity settings when the config names none (Istio's defaults: its trust domain and root namespace). */
export const IDENTITY_DEFAULTS: IdentityConfig = {
  trustDomain: 'cluster.local', certTtlMs: 24 * 3600_000, caDir: '/var/lib/sockmesh/ca', rootNamespace: 'istio-system',
};

/** A Kubernetes namespace (a DNS label) and a service account (a DNS subdomain). */
export const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const SERVICE_ACCOUNT_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** A SPIFFE trust domain: lower-case letters, digits, '.', '-', '_' (at most 255). */
export const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;

/** The ALPN protocol mesh mTLS carries, so an app's own TLS on the same port is told apart. */
export const MESH_ALPN = 'sockmesh';
