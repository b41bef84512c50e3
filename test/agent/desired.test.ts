import { describe, expect, it } from 'vitest';
import { assignServiceIds, compileDesired } from '../../src/agent/desired.js';
import { diffEntries } from '../../src/agent/reconcile.js';
import { configCodec, lpmKeyCodec, svcKeyCodec, svcStateCodec, svcValCodec, SVC_AUTO, SVC_REDIRECT, SVC_SPLICE, CFG_ENABLED, CFG_INCLUDE_ANY, CFG_OUTBOUND_ALL } from '../../src/bpf/codecs.js';
import { parseConfigText } from '../../src/config/load.js';

const cfg = parseConfigText(`
sidecar: { uid: 1337, gid: 1338, outboundPort: 15001, inboundPort: 15006 }
services:
  - { name: reviews, addresses: [10.96.0.20, 10.96.0.21], ports: [9080], splice: always }
  - { name: details, addresses: [10.96.0.22], ports: [9080] }
  - { name: ratings, ports: [9090, 9091], redirect: false, splice: never }
exclude: { outboundPorts: [22], outboundCIDRs: [169.254.0.0/16] }
`, 't');

describe('service ids', () => {
  it('keeps existing ids and fills the lowest free ones', () => {
    expect(assignServiceIds(['a', 'b', 'c'], {}, 8)).toEqual({ a: 0, b: 1, c: 2 });
    expect(assignServiceIds(['c', 'd', 'a'], { a: 0, b: 1, c: 2 }, 8)).toEqual({ a: 0, c: 2, d: 1 });
    expect(() => assignServiceIds(['a', 'b'], {}, 1)).toThrow(/too many services/);
  });
});

describe('compileDesired', () => {
  const ids = assignServiceIds(cfg.services.map((s) => s.name), {}, 16);
  const d = compileDesired(cfg, ids, 16);

  it('writes one service key per address and port, any-address keys as zero', () => {
    const keys = d.sm_services.map((e) => [svcKeyCodec.decode(e.key), svcValCodec.decode(e.value).serviceId]);
    expect(keys).toEqual([
      [{ addr: '10.96.0.20', port: 9080 }, 0],
      [{ addr: '10.96.0.21', port: 9080 }, 0],
      [{ addr: '10.96.0.22', port: 9080 }, 1],
      [{ addr: null, port: 9090 }, 2],
      [{ addr: null, port: 9091 }, 2],
    ]);
  });

  it('sets per-service flags and zeroes every other id of the array', () => {
    expect(d.sm_svc_state).toHaveLength(16);
    const flags = d.sm_svc_state.map((e) => svcStateCodec.decode(e.value).flags);
    expect(flags.slice(0, 4)).toEqual([SVC_REDIRECT | SVC_SPLICE, SVC_REDIRECT | SVC_AUTO, 0, 0]);
  });

  it('encodes the runtime config and exclusions', () => {
    expect(configCodec.decode(d.sm_config[0].value)).toEqual({
      sidecarUid: 1337, sidecarGid: 1338, outboundIp4: '127.0.0.1', outboundPort: 15001, inboundPort: 15006, flags: CFG_ENABLED | CFG_INCLUDE_ANY,
      autoSegBytes: 256, autoMinSegs: 256, autoVotes: 4,
    });
    expect(d.sm_excl_ports.map((e) => e.key.readUInt16LE())).toEqual([22]);
    expect(lpmKeyCodec.decode(d.sm_excl_cidrs[0].key)).toEqual({ prefixlen: 96 + 16, addr: '169.254.0.0' });
  });
});

describe('compileDesired with Istio-style capture', () => {
  it('carries outbound: all, include CIDRs and ports, and the pod\'s own addresses', () => {
    const all = parseConfigText(`
services: []
capture: { outbound: all, includeOutboundCIDRs: [10.96.0.0/12], includeOutboundPorts: [8443] }
`, 't');
    const d = compileDesired(all, {}, 4, ['10.200.0.1/32']);
    expect(configCodec.decode(d.sm_config[0].value).flags).toBe(CFG_ENABLED | CFG_OUTBOUND_ALL);
    expect(d.sm_incl_cidrs.map((e) => lpmKeyCodec.decode(e.key))).toEqual([{ prefixlen: 96 + 12, addr: '10.96.0.0' }]);
    expect(d.sm_incl_ports.map((e) => e.key.readUInt16LE())).toEqual([8443]);
    expect(d.sm_local_addrs.map((e) => lpmKeyCodec.decode(e.key))).toEqual([{ prefixlen: 128, addr: '10.200.0.1' }]);
  });
});

describe('diffEntries', () => {
  const e = (k: number, v: number) => ({ key: Buffer.from([k]), value: Buffer.from([v]) });

  it('puts missing and changed entries and deletes extra ones', () => {
    const diff = diffEntries([e(1, 1), e(2, 2), e(3, 3)], [e(1, 1), e(2, 9), e(4, 4)], false);
    expect(diff.put).toEqual([e(2, 9), e(4, 4)]);
    expect(diff.del).toEqual([Buffer.from([3])]);
  });

  it('is empty when the maps already match (idempotent)', () => {
    expect(diffEntries([e(1, 1)], [e(1, 1)], false)).toEqual({ put: [], del: [] });
  });

  it('never deletes from array maps', () => {
    expect(diffEntries([e(1, 1), e(2, 0)], [e(1, 1)], true).del).toEqual([]);
  });
});
