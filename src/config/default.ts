// The embedded default config, used when no --config is given.
export const DEFAULT_CONFIG_YAML = `# sockmesh default config
sidecar: { uid: 1337, outboundPort: 15001, inboundPort: 15006 }
services:
  - name: reviews
    addresses: [10.96.0.20]     # service addresses; omitted = any address on these ports
    ports: [9080]
    redirect: true              # per-service switch
exclude: { outboundPorts: [], outboundCIDRs: [] }
`;
