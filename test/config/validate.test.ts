import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

function issuesOf(yaml: string): Array<{ path: string; message: string }> {
  try {
    parseConfigText(yaml, 'test.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues;
  }
  throw new Error('config was accepted');
}

describe('config validation', () => {
  it('accepts the embedded default and fills defaults', () => {
    const cfg = loadConfig(undefined);
    expect(cfg.sidecar).toEqual({ uid: 1337, gid: 1337, address: '127.0.0.1', outboundPort: 15001, inboundPort: 15006 });
    expect(cfg.services).toEqual([{ name: 'reviews', addresses: ['10.96.0.20'], ports: [9080], redirect: true, splice: 'auto' }]);
    expect(cfg.capture).toEqual({
      outbound: 'services', includeOutboundCIDRs: ['*'], excludeOutboundCIDRs: [], includeOutboundPorts: [], excludeOutboundPorts: [],
      includeInboundPorts: '*', excludeInboundPorts: [15008, 15090, 15021, 15020],
    });
    expect(cfg.exclude).toEqual({ outboundPorts: [], outboundCIDRs: [] });
  });

  it('normalises CIDRs and accepts a service without addresses', () => {
    const cfg = parseConfigText(`
services: [{ name: any-port, ports: [80, 443], redirect: false, splice: never }]
exclude: { outboundPorts: [22], outboundCIDRs: [10.1.2.3/8, 192.168.1.1, 'fd00::/8'] }
`, 't');
    expect(cfg.services[0]).toMatchObject({ addresses: [], redirect: false, splice: 'never' });
    expect(cfg.exclude.outboundCIDRs).toEqual(['10.1.2.3/8', '192.168.1.1/32', 'fd00::/8']);
  });

  it('names the field of a wrong type', () => {
    expect(issuesOf('services: []\nsidecar: { uid: "root" }')).toEqual([{ path: 'sidecar.uid', message: 'must be an integer, got string "root"' }]);
    expect(issuesOf('services: [{ name: a, ports: [80], redirect: "yes" }]')[0].path).toBe('services[0].redirect');
    expect(issuesOf('services: { name: a }')[0]).toMatchObject({ path: 'services', message: 'must be a list, got a mapping' });
  });

  it('rejects ports out of range', () => {
    const issues = issuesOf('services: [{ name: a, ports: [0, 80, 65536] }]\nsidecar: { outboundPort: 70000 }');
    expect(issues.map((i) => i.path).sort()).toEqual(['services[0].ports[0]', 'services[0].ports[2]', 'sidecar.outboundPort']);
    expect(issues.find((i) => i.path === 'services[0].ports[2]')?.message).toBe('must be between 1 and 65535, got 65536');
  });

  it('rejects duplicate service names and doubly claimed addresses', () => {
    const issues = issuesOf(`
services:
  - { name: a, addresses: [10.0.0.1], ports: [80] }
  - { name: a, addresses: [10.0.0.2], ports: [80] }
  - { name: b, addresses: [10.0.0.1], ports: [80] }
`);
    expect(issues).toContainEqual({ path: 'services[1].name', message: 'duplicate service name "a" (also services[0])' });
    expect(issues).toContainEqual({ path: 'services[2]', message: '10.0.0.1:80 is already claimed by service "a"' });
  });

  it('rejects unknown keys at every level', () => {
    const paths = issuesOf('bogus: 1\nsidecar: { uid: 1, colour: red }\nservices: [{ name: a, ports: [1], weight: 3 }]\nexclude: { inboundPorts: [] }')
      .map((i) => i.path).sort();
    expect(paths).toEqual(['bogus', 'exclude.inboundPorts', 'services[0].weight', 'sidecar.colour']);
  });

  it('rejects bad names, addresses, CIDRs and splice modes', () => {
    const issues = issuesOf(`
services: [{ name: Bad_Name, addresses: [10.0.0.300, 'fd00::zz'], ports: [1], splice: sometimes }]
exclude: { outboundCIDRs: [10.0.0.0/33, nonsense] }
`);
    expect(issues.map((i) => i.path).sort()).toEqual([
      'exclude.outboundCIDRs[0]', 'exclude.outboundCIDRs[1]', 'services[0].addresses[0]', 'services[0].addresses[1]',
      'services[0].name', 'services[0].splice',
    ]);
  });

  it('takes IPv6 service and pod addresses (IPv4-mapped ones as IPv4), but not for kernel mode', () => {
    const cfg = parseConfigText(`
services: [{ name: web, addresses: [10.96.0.20, 'FD00:96::20', '::ffff:10.96.0.21'], ports: [80] }]
capture: { excludeOutboundCIDRs: ['fd00:1::/64'] }
pods: [{ name: p, cgroup: p, netns: sm-x, addresses: [10.0.0.1, 'fd00::1'] }]
`, 't');
    expect(cfg.services[0].addresses).toEqual(['10.96.0.20', 'fd00:96::20', '10.96.0.21']);
    expect(cfg.pods[0].addresses).toEqual(['10.0.0.1', 'fd00::1']);
    expect(cfg.capture.excludeOutboundCIDRs).toEqual(['fd00:1::/64']);
    expect(issuesOf("services: [{ name: k, addresses: ['fd00::5'], ports: [80], mode: kernel, endpoints: [10.0.0.5] }]"))
      .toEqual([{ path: 'services[0].addresses[0]', message: expect.stringMatching(/IPv6: kernel mode serves IPv4 services/) }]);
  });

  it('merges the exclude block into the Istio-style capture block', () => {
    const cfg = parseConfigText(`
services: []
exclude: { outboundPorts: [22], outboundCIDRs: [10.0.0.0/8] }
capture: { outbound: all, includeOutboundCIDRs: [10.96.0.0/12], excludeOutboundPorts: [23, 22], includeInboundPorts: [9080], excludeInboundPorts: [9999] }
`, 't');
    expect(cfg.capture).toMatchObject({
      outbound: 'all', includeOutboundCIDRs: ['10.96.0.0/12'], excludeOutboundPorts: [23, 22], excludeOutboundCIDRs: ['10.0.0.0/8'],
      includeInboundPorts: [9080], excludeInboundPorts: [15008, 15090, 15021, 15020, 9999],
    });
    expect(issuesOf('services: []\ncapture: { outbound: some }')[0]).toEqual({ path: 'capture.outbound', message: 'must be services or all, got string "some"' });
    // The per-service vote's tuning is gone: said so, not silently ignored.
    expect(issuesOf('services: []\nautoSplice: { votes: 2 }')).toEqual([{ path: 'autoSplice', message: expect.stringMatching(/was removed: .*TCP_NODELAY.*Delete this block/) }]);
  });

  it('rejects YAML that does not parse, and duplicate keys', () => {
    expect(issuesOf('services: [')[0].message).toMatch(/^not valid YAML/);
    expect(issuesOf('sidecar: {uid: 1}\nsidecar: {uid: 2}')[0].message).toMatch(/^not valid YAML/);
  });

  it('requires ports, and at least one', () => {
    expect(issuesOf('services: [{ name: a }]')).toEqual([{ path: 'services[0].ports', message: 'is required' }]);
    expect(issuesOf('services: [{ name: a, ports: [] }]')).toEqual([{ path: 'services[0].ports', message: 'must list at least one port' }]);
  });

  it('reports a file that cannot be read as a user error', () => {
    expect(() => loadConfig('/nonexistent/sockmesh.yaml')).toThrow(/cannot read config \/nonexistent\/sockmesh.yaml/);
  });
});
