// The desired-state model: what a config file (or, later, Kubernetes) says the mesh should be.

export type SpliceMode = 'always' | 'never';

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
}

export interface ExcludeConfig {
  outboundPorts: number[];
  outboundCIDRs: string[];
}

export interface MeshConfig {
  sidecar: SidecarConfig;
  services: ServiceConfig[];
  exclude: ExcludeConfig;
}
