// sm_decide's mirror (src/plan/decide.ts) over tables compiled from a config, without a kernel:
// every branch of the decision, in its order. The same function answers `sockmesh explain`, and
// test/e2e/parity.test.ts holds its verdicts against where real connections land.
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { decide, desiredTables, type Verdict } from '../../src/plan/decide.js';
import { assignServiceIds, compileDesired, type ResolvedPod } from '../../src/plan/desired.js';

const cfg = (capture: string) => parseConfigText(`
sidecar: { uid: 1337, gid: 1338 }
services:
  - { name: reviews, addresses: [10.96.0.20], ports: [9080] }
  - { name: off, addresses: [10.96.0.21], ports: [9080], redirect: false }
  - { name: db, addresses: [10.96.0.30], ports: [5432], mode: kernel, endpoints: [{ address: 10.244.0.9 }] }
  - { name: six, addresses: ['fd00:96::20'], ports: [9080] }
exclude: { outboundPorts: [22], outboundCIDRs: [10.96.9.0/24] }
${capture}
`, 't');

function tables(capture = '', localAddrs: string[] = ['10.244.1.7/32']) {
  const c = cfg(capture);
  const ids = assignServiceIds(c.services.map((s) => s.name), {}, 16);
  const pod: ResolvedPod = { name: 'p', podId: 1, netnsCookie: 0n, cgroupId: 0n, cgroupLevel: 0, localAddrs, sidecar: c.sidecar, capture: c.capture };
  const t = desiredTables(compileDesired(c, ids, 16, [pod]));
  return { t, pod: t.pod(0n)!, ids };
}

const APP = 4000;
const SIDECAR = 1337;

describe('decide: the checks of sm_decide, in order', () => {
  const cases: Array<[string, { uid: number; gid?: number; addr: string; port: number; src?: string; capture?: string; kernel?: boolean }, Verdict, RegExp]> = [
    ['a listed service, switch on', { uid: APP, addr: '10.96.0.20', port: 9080 }, 'sidecar-outbound', /a listed service with its switch on/],
    ['a listed IPv6 service', { uid: APP, addr: 'fd00:96::20', port: 9080 }, 'sidecar-outbound', /a listed service/],
    ['a service switched off', { uid: APP, addr: '10.96.0.21', port: 9080 }, 'direct', /switched off/],
    ['a kernel-mode service in eBPF mode', { uid: APP, addr: '10.96.0.30', port: 5432, kernel: true }, 'kernel', /kernel-mode service/],
    ['a kernel-mode service where there is no kernel mode (iptables)', { uid: APP, addr: '10.96.0.30', port: 5432 }, 'sidecar-outbound', /a listed service/],
    ['an excluded port, before anything else', { uid: SIDECAR, addr: '10.96.0.20', port: 22 }, 'direct', /port 22 is excluded/],
    ['the sidecar uid to a service', { uid: SIDECAR, addr: '10.96.0.20', port: 9080 }, 'direct', /sidecar's own connections/],
    ['the sidecar gid with another uid', { uid: 4242, gid: 1338, addr: '10.96.0.20', port: 9080 }, 'direct', /sidecar's own connections/],
    ['the sidecar to its own pod: inbound', { uid: SIDECAR, addr: '10.244.1.7', port: 9090 }, 'sidecar-inbound', /its own pod: inbound/],
    ['the sidecar to its own pod on HBONE', { uid: SIDECAR, addr: '10.244.1.7', port: 15008 }, 'direct', /never captured/],
    ['the sidecar to 127.0.0.1', { uid: SIDECAR, addr: '127.0.0.1', port: 9090 }, 'direct', /never captured/],
    ['the passthrough source to the pod', { uid: SIDECAR, addr: '10.244.1.7', port: 9090, src: '127.0.0.6' }, 'direct', /inbound passthrough from 127\.0\.0\.6/],
    ['the app to loopback', { uid: APP, addr: '127.0.0.1', port: 9090 }, 'direct', /inside the pod/],
    ['the app to its own address', { uid: APP, addr: '10.244.1.7', port: 9090 }, 'direct', /inside the pod/],
    ['an excluded CIDR', { uid: APP, addr: '10.96.9.4', port: 9080 }, 'direct', /excluded CIDR/],
    ['no listed service (capture: services)', { uid: APP, addr: '10.96.1.5', port: 9080 }, 'direct', /not a listed service/],
    ['an included port', { uid: APP, addr: '10.96.1.5', port: 8443, capture: 'capture: { includeOutboundPorts: [8443] }' }, 'sidecar-outbound', /port 8443 is included/],
    ['outbound: all with includeOutboundCIDRs *', { uid: APP, addr: '10.96.1.5', port: 9080, capture: 'capture: { outbound: all }' }, 'sidecar-outbound', /includeOutboundCIDRs: \*/],
    ['outbound: all, inside an included CIDR', { uid: APP, addr: '10.96.1.5', port: 9080, capture: "capture: { outbound: all, includeOutboundCIDRs: ['10.96.0.0/16'] }" }, 'sidecar-outbound', /in includeOutboundCIDRs/],
    ['outbound: all, outside the included CIDRs', { uid: APP, addr: '10.97.1.5', port: 9080, capture: "capture: { outbound: all, includeOutboundCIDRs: ['10.96.0.0/16'] }" }, 'direct', /in no includeOutboundCIDRs/],
    ['outbound: all, a switched-off service stays off', { uid: APP, addr: '10.96.0.21', port: 9080, capture: 'capture: { outbound: all }' }, 'direct', /switched off/],
  ];

  it.each(cases)('%s', (_what, c, verdict, rule) => {
    const { t, pod, ids } = tables(c.capture);
    const d = decide(t, pod, c.uid, c.gid ?? c.uid, c.addr, c.port, c.kernel ?? false, c.src);
    expect({ verdict: d.verdict, rule: d.rule }).toEqual({ verdict, rule: expect.stringMatching(rule) });
    expect(d.checks.length).toBeGreaterThanOrEqual(2);
    if (/service/.test(d.rule) && d.verdict !== 'direct') expect(d.serviceId).toBe(ids[c.addr === '10.96.0.30' ? 'db' : c.addr.includes(':') ? 'six' : 'reviews']);
  });
});
