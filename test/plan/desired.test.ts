import { describe, expect, it } from 'vitest';
import { assignServiceIds, compileDesired, configEntry, type ResolvedPod } from '../../src/plan/desired.js';
import { diffEntries } from '../../src/plan/reconcile.js';
import {
  configCodec, lpmKeyCodec, podCodec, portKeyCodec, svcKeyCodec, svcStateCodec, svcValCodec, SVC_AUTO, SVC_REDIRECT, SVC_SPLICE, CFG_ENABLED,
  POD_INCLUDE_ANY, POD_OUTBOUND_ALL, RULE_EXCLUDE, RULE_INCLUDE, RULE_LOCAL, POD_INBOUND, POD_INBOUND_ALL, RULE_IN_EXCLUDE, RULE_IN_INCLUDE, addrKeyCodec, localPodCodec,
} from '../../src/bpf/codecs.js';
import type { MeshConfig } from '../../src/config/model.js';
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
    expect(() => assignServiceIds(['a', 'b'], {}, 1)).toThrow(/too many: the kernel map holds 1/);
    expect(assignServiceIds(['p', 'q'], { q: 0 }, 4, 1)).toEqual({ p: 1, q: 2 });
  });
});

describe('compileDesired', () => {
  const ids = assignServiceIds(cfg.services.map((s) => s.name), {}, 16);
  const d = compileDesired(cfg, ids, 16, [pod(cfg, { name: 'default', podId: 1, netnsCookie: 0n })]);

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

  it('sets per-service flags for the ids in use (the reconciler zeroes the others)', () => {
    expect(d.sm_svc_state.map((e) => e.key.readUInt32LE())).toEqual([0, 1, 2]);
    const flags = d.sm_svc_state.map((e) => svcStateCodec.decode(e.value).flags);
    expect(flags).toEqual([SVC_REDIRECT | SVC_SPLICE, SVC_REDIRECT | SVC_AUTO, 0]);
  });

  it('encodes the node-wide settings per slot, each pod with its sidecar, and its exclusions', () => {
    const c = configEntry(cfg, 1);
    expect(c.key.readUInt32LE()).toBe(1);
    expect(configCodec.decode(c.value)).toEqual({ flags: CFG_ENABLED, hopSplice: 0, spliceQueueBytes: 4 * 2 ** 20 });
    expect(d.sm_pods).toHaveLength(1);
    expect(d.sm_pods[0].key.readBigUInt64LE()).toBe(0n);
    expect(podCodec.decode(d.sm_pods[0].value)).toEqual({
      cgroupId: 77n, cgroupLevel: 2, podId: 1, sidecarUid: 1337, sidecarGid: 1338, outboundIp4: '127.0.0.1', outboundPort: 15001,
      inboundPort: 15006, flags: POD_INCLUDE_ANY | POD_INBOUND | POD_INBOUND_ALL,
    });
    const ports = d.sm_ports.map((e) => portKeyCodec.decode(e.key));
    expect(ports.filter((p) => p.kind === RULE_EXCLUDE)).toEqual([{ podId: 1, port: 22, kind: RULE_EXCLUDE }]);
    // Inbound: every port (includeInboundPorts '*') but Istio's own.
    expect(ports.filter((p) => p.kind === RULE_IN_EXCLUDE).map((p) => p.port).sort()).toEqual([15008, 15020, 15021, 15090]);
    expect(ports.filter((p) => p.kind === RULE_IN_INCLUDE)).toEqual([]);
    expect(lpmKeyCodec.decode(d.sm_cidrs[0].key)).toEqual({ prefixlen: 64 + 96 + 16, podId: 1, kind: RULE_EXCLUDE, addr: '169.254.0.0' });
  });

  it('keys every pod by its netns cookie and keeps each pod\'s rules apart', () => {
    const two = compileDesired(cfg, ids, 16, [
      pod(cfg, { name: 'a', podId: 1, netnsCookie: 4097n }),
      pod(cfg, { name: 'b', podId: 2, netnsCookie: 4098n, sidecar: { ...cfg.sidecar, uid: 1500, gid: 1500 } }),
    ]);
    expect(two.sm_pods.map((e) => [e.key.readBigUInt64LE(), podCodec.decode(e.value).podId, podCodec.decode(e.value).sidecarUid]))
      .toEqual([[4097n, 1, 1337], [4098n, 2, 1500]]);
    expect([...new Set(two.sm_ports.map((e) => portKeyCodec.decode(e.key).podId))]).toEqual([1, 2]);
    // Services are node-wide: written once, whatever the number of pods.
    expect(two.sm_services).toHaveLength(d.sm_services.length);
  });
});

function pod(cfg: MeshConfig, p: Partial<ResolvedPod> & { name: string; podId: number; netnsCookie: bigint }): ResolvedPod {
  return { cgroupId: 77n, cgroupLevel: 2, localAddrs: [], sidecar: cfg.sidecar, capture: cfg.capture, ...p };
}

describe('compileDesired with Istio-style capture', () => {
  it('carries outbound: all, include CIDRs and ports, and the pod\'s own addresses', () => {
    const all = parseConfigText(`
services: []
capture: { outbound: all, includeOutboundCIDRs: [10.96.0.0/12], includeOutboundPorts: [8443] }
`, 't');
    const d = compileDesired(all, {}, 4, [pod(all, { name: 'p', podId: 3, netnsCookie: 9n, localAddrs: ['10.200.0.1/32'] })]);
    expect(podCodec.decode(d.sm_pods[0].value).flags).toBe(POD_OUTBOUND_ALL | POD_INBOUND | POD_INBOUND_ALL);
    expect(d.sm_cidrs.map((e) => lpmKeyCodec.decode(e.key))).toEqual([
      { prefixlen: 64 + 96 + 12, podId: 3, kind: RULE_INCLUDE, addr: '10.96.0.0' },
      { prefixlen: 64 + 128, podId: 3, kind: RULE_LOCAL, addr: '10.200.0.1' },
    ]);
    expect(d.sm_ports.map((e) => portKeyCodec.decode(e.key)).filter((p) => p.kind === RULE_INCLUDE)).toEqual([{ podId: 3, port: 8443, kind: RULE_INCLUDE }]);
    // The pod's address names it (and its namespace) node-wide: inbound capture and hops between pods.
    expect(d.sm_local_addrs.map((e) => [addrKeyCodec.decode(e.key).addr, localPodCodec.decode(e.value)])).toEqual([['10.200.0.1', { netns: 9n, podId: 3 }]]);
  });

  it('carries inbound capture: listed ports, none, and addresses two pods claim', () => {
    const listed = parseConfigText('services: []\ncapture: { includeInboundPorts: [9080, 15090], excludeInboundPorts: [9443] }\n', 't');
    const d = compileDesired(listed, {}, 4, [pod(listed, { name: 'p', podId: 3, netnsCookie: 9n })]);
    expect(podCodec.decode(d.sm_pods[0].value).flags & (POD_INBOUND | POD_INBOUND_ALL)).toBe(POD_INBOUND);
    const ports = d.sm_ports.map((e) => portKeyCodec.decode(e.key));
    expect(ports.filter((p) => p.kind === RULE_IN_INCLUDE).map((p) => p.port)).toEqual([9080, 15090]);
    // 15090 is listed but always excluded: the program checks the exclusions first.
    expect(ports.filter((p) => p.kind === RULE_IN_EXCLUDE).map((p) => p.port).sort()).toEqual([15008, 15020, 15021, 15090, 9443]);

    const none = parseConfigText('services: []\ncapture: { includeInboundPorts: [] }\n', 't');
    expect(podCodec.decode(compileDesired(none, {}, 4, [pod(none, { name: 'p', podId: 3, netnsCookie: 9n })]).sm_pods[0].value).flags & (POD_INBOUND | POD_INBOUND_ALL)).toBe(0);

    const clash = compileDesired(none, {}, 4, [
      pod(none, { name: 'a', podId: 1, netnsCookie: 7n, localAddrs: ['10.0.0.1/32', '10.0.0.2/32'] }),
      pod(none, { name: 'b', podId: 2, netnsCookie: 8n, localAddrs: ['10.0.0.2/32'] }),
      pod(none, { name: 'any', podId: 3, netnsCookie: 0n, localAddrs: ['10.0.0.3/32'] }),
    ]);
    expect(clash.sm_local_addrs.map((e) => addrKeyCodec.decode(e.key).addr)).toEqual(['10.0.0.1']);
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

  it('never deletes from array maps: an index no longer in use goes back to zero', () => {
    expect(diffEntries([e(1, 1), e(2, 0), e(3, 7)], [e(1, 1)], true)).toEqual({ put: [e(3, 0)], del: [] });
  });
});
