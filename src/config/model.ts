// The desired-state model: what a config file (or, later, Kubernetes) says the mesh should be.

export type SpliceMode = 'auto' | 'always' | 'never';

export interface SidecarConfig {
  /** uid whose connections are never captured (the sidecar's own upstream traffic). */
  uid: number;
  /** gid likewise; defaults to uid. */
  gid: number;
  /** Address of the sidecar's listeners (IPv4). */
  address: string;
  outboundPort: number;
  inboundPort: number;
}

export interface ServiceConfig {
  name: string;
  /** Service addresses; empty = any address on these ports. */
  addresses: string[];
  ports: number[];
  /** Per-service switch: capture new connections to the sidecar. */
  redirect: boolean;
  /** Whether the app<->sidecar socket pair is spliced through sockmap. */
  splice: SpliceMode;
  /** 'kernel': connections go straight to an endpoint, chosen at connect time; no sidecar (absent: through the sidecar). */
  mode?: 'kernel';
  /** Where the service's connections can go (kernel mode). */
  endpoints?: Endpoint[];
  /** Kernel mode: 'client' keeps a client pod on its endpoint (absent: a random endpoint per connection). */
  affinity?: 'client';
  /** 'http': the governance sidecar applies its policy per request (HTTP/1.1); 'http2' and 'grpc':
   * the same over HTTP/2 (h2c between app and sidecar: each request of a connection is balanced on
   * its own); 'udp': a kernel-mode UDP service; absent: TCP (per-connection balancing and timeouts). */
  protocol?: 'udp' | HttpProtocol;
  /** Traffic policy the governance sidecar enforces (Istio's DestinationRule / VirtualService names). */
  policy?: ServicePolicy;
  /** Kernel mode: close the open connections to an endpoint when it leaves the list (absent: they finish). */
  terminateOnRemove?: boolean;
}

export type LoadBalancer = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM';

/** Istio's protocols the sidecar proxies per request. */
export type HttpProtocol = 'http' | 'http2' | 'grpc';

/** DestinationRule loadBalancer.consistentHash: endpoints chosen by a hash of the request's header,
 * cookie or source address (a ring: an endpoint leaving moves only its own share). */
export type ConsistentHash = { httpHeaderName: string } | { httpCookie: string } | { useSourceIp: true };

/** Istio's StringMatch. */
export type StringMatch = { exact: string } | { prefix: string } | { regex: string };

/** One of a route's match blocks (HTTPMatchRequest): every condition given must hold. */
export interface HttpMatch {
  uri?: StringMatch;
  /** Lower-case header names. */
  headers?: Record<string, StringMatch>;
  method?: StringMatch;
  /** The service port the request came to. */
  port?: number;
}

/** Headers a route sets, appends or removes (VirtualService headers.request / headers.response). */
export interface HeaderOps {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
}

/** Where a route sends a request: a service (by its name in the config), one of its subsets, a share. */
export interface RouteDestination {
  host: string;
  subset?: string;
  /** The destination service's port (absent: the port the request came to, when that service has it; else its first). */
  port?: number;
  /** Share of the route's requests: weight / the route's sum of weights (Istio's relative weights). */
  weight: number;
}

/** A VirtualService http route: the first whose match holds takes the request (no match: every request). */
export interface HttpRoute {
  name: string;
  /** Any one of them (an empty list: every request). */
  match: HttpMatch[];
  route: RouteDestination[];
  timeoutMs?: number;
  retries?: ServicePolicy['retries'];
  headers?: { request?: HeaderOps; response?: HeaderOps };
  /** rewrite.uri: replaces the matched prefix (a prefix match), else the whole path. */
  rewriteUri?: string;
  /** Applied by the client's sidecar: a delay, then an abort, each to a percentage of requests. */
  fault?: { delay?: { fixedDelayMs: number; percent: number }; abort?: { httpStatus: number; percent: number } };
}

/** A DestinationRule subset: the service's endpoints whose labels match, with their own traffic policy. */
export interface Subset {
  name: string;
  labels: Record<string, string>;
  trafficPolicy?: Pick<ServicePolicy, 'loadBalancer' | 'consistentHash' | 'outlierDetection' | 'connectionPool'>;
}

/** Istio's names: DestinationRule trafficPolicy (loadBalancer, outlierDetection, connectionPool),
 * VirtualService http route (timeout, retries), and a local rate limit on the inbound side. */
export interface ServicePolicy {
  loadBalancer?: LoadBalancer;
  /** Whole request (per try when retries set perTryTimeout), ms. */
  timeoutMs?: number;
  retries?: { attempts: number; perTryTimeoutMs?: number; retryOn: string[] };
  outlierDetection?: { consecutive5xxErrors: number; intervalMs: number; baseEjectionTimeMs: number };
  connectionPool?: { tcp: { maxConnections: number } };
  /** Server side, on the inbound listener: requests per second, and the burst above it. */
  rateLimit?: { requestsPerSecond: number; burst: number };
  consistentHash?: ConsistentHash;
  /** DestinationRule subsets (HTTP services). */
  subsets?: Subset[];
  /** VirtualService http routes, in order (HTTP services); none: every request to the service's endpoints. */
  routes?: HttpRoute[];
}

export interface Endpoint {
  address: string;
  /** 0: the port the connection asked for (a multi-port service's endpoints). */
  port: number;
  /** Relative share of new connections, 1..1000 (default 1). */
  weight: number;
  /** Its pod's labels (what DestinationRule subsets select). */
  labels?: Record<string, string>;
}

export interface ExcludeConfig {
  outboundPorts: number[];
  outboundCIDRs: string[];
}

/**
 * Istio-compatible capture options (istio-init's flags, same defaults and meanings). The
 * `exclude` block's ports and CIDRs are merged into excludeOutboundPorts/CIDRs.
 */
export interface CaptureConfig {
  /** services: only the listed services (sockmesh's default); all: every outbound TCP, as istio-init. */
  outbound: 'services' | 'all';
  /** ['*'] = every address (outbound: all only). */
  includeOutboundCIDRs: string[];
  excludeOutboundCIDRs: string[];
  includeOutboundPorts: number[];
  excludeOutboundPorts: number[];
  /** '*' = every port but the excluded ones; [] = no inbound capture. */
  includeInboundPorts: '*' | number[];
  /** Always includes Istio's own ports 15008, 15090, 15021, 15020. */
  excludeInboundPorts: number[];
}


/**
 * A meshed pod: its processes (a cgroup) and its network namespace. Sidecar identity and capture
 * options are the node's, with the pod's own overrides applied (Istio's per-pod annotations map
 * onto these).
 */
export interface PodConfig {
  name: string;
  /** cgroup2 directory: relative to the instance's --cgroup parent, or absolute below it. */
  cgroup: string;
  /** Network namespace: a name under /var/run/netns or a path (/proc/PID/ns/net); undefined:
   * any namespace (only the single-pod form `up --cgroup X` without --netns). */
  netns?: string;
  /** The pod's own addresses; undefined: discovered from the namespace. */
  addresses?: string[];
  sidecar: SidecarConfig;
  capture: CaptureConfig;
  /** Its workload identity's parts (Kubernetes: the pod's namespace and service account). */
  namespace: string;
  serviceAccount: string;
  /** Its labels (what Istio's selectors match). */
  labels: Record<string, string>;
}

/** Istio's mutual TLS modes (PeerAuthentication). */
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** The mesh's identities: SPIFFE IDs spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>. */
export interface IdentityConfig {
  trustDomain: string;
  /** Lifetime of a pod certificate (renewed at half of it). */
  certTtlMs: number;
  /** File source: the CA's directory (Istio's plug-in CA files: root-cert.pem, ca-cert.pem,
   * ca-key.pem, cert-chain.pem); a self-signed root is made there when it holds none. */
  caDir: string;
  /** Istio's root namespace: its policies without a selector apply to the whole mesh. */
  rootNamespace: string;
}

/** Istio PeerAuthentication: which mTLS mode a workload's inbound traffic takes. */
export interface PeerAuthentication {
  name: string;
  namespace: string;
  /** matchLabels; undefined: every workload of the namespace (the root namespace: the mesh). */
  selector?: Record<string, string>;
  /** undefined: UNSET (the parent's mode). */
  mode?: MtlsMode;
  /** Per port (only with a selector, as in Istio). */
  portLevel: Array<{ port: number; mode: MtlsMode }>;
}

/** Istio AuthorizationPolicy (ALLOW / DENY), enforced by the server's sidecar. */
export interface AuthorizationPolicy {
  name: string;
  namespace: string;
  selector?: Record<string, string>;
  action: 'ALLOW' | 'DENY';
  /** No rule: matches nothing (an ALLOW policy without rules denies everything). */
  rules: AuthorizationRule[];
}

/** A rule matches when one of `from` and one of `to` match (an empty list matches anything). */
export interface AuthorizationRule {
  from: AuthorizationSource[];
  to: AuthorizationOperation[];
}

/** Values are Istio's: exact, `prefix*`, `*suffix` or `*`; principals without spiffe://. */
export interface AuthorizationSource {
  principals?: string[];
  notPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
}

export interface AuthorizationOperation {
  ports?: number[];
  notPorts?: number[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

/** A meshed workload elsewhere (another node's pod): where it is, who it is, what selects it. */
export interface PeerWorkload {
  addresses: string[];
  namespace: string;
  serviceAccount: string;
  labels: Record<string, string>;
}

/** Istio's Telemetry tracing, for an OTLP collector: where spans go and how many requests make one. */
export interface TracingConfig {
  /** OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces. */
  collector: string;
  /** 0..100 of traces (decided on the trace id, so every sidecar of a trace decides alike). */
  randomSamplingPercentage: number;
  /** Spans held for export at most (more are dropped and counted). */
  maxQueueSize: number;
}

export interface MeshConfig {
  sidecar: SidecarConfig;
  services: ServiceConfig[];
  exclude: ExcludeConfig;
  capture: CaptureConfig;
  /** How much redirected data a spliced socket may queue for its reader (at least its rcvbuf). */
  spliceQueueBytes: number;
  /** Hops between two local pods' sockets that no capture made (a sidecar's upstream to a pod on
   * this node, a sidecar to its own app): auto splices those whose client sends each write at
   * once (TCP_NODELAY), as splice: auto does without per-service memory. */
  spliceHops: SpliceMode;
  /** Listed pods; empty: the single-pod form (the --cgroup and --netns of the instance), unless
   * podsOnly. */
  pods: PodConfig[];
  /** Only the listed pods are meshed, none when none is listed (a cluster node: set by the
   * Kubernetes source, never read from a file). */
  podsOnly?: boolean;
  identity: IdentityConfig;
  peerAuthentications: PeerAuthentication[];
  authorizationPolicies: AuthorizationPolicy[];
  /** Meshed workloads not on this node (the Kubernetes source: the cluster's meshed pods). */
  peers: PeerWorkload[];
  /** Spans of every request through the sidecars, exported over OTLP/HTTP. */
  tracing?: TracingConfig;
  /** What the source took but does not enforce (fields of Istio documents), to be logged. */
  notices?: string[];
}
