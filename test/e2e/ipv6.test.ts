// IPv6 and dual stack in eBPF mode, end to end: an IPv6 client of an IPv6 service and a dual-stack
// client (an IPv6 socket) of an IPv4 service are both captured to the sidecar, which reads the
// original destination in its own family, and both socket pairs are spliced (an IPv6 socket's IPv4
// traffic keys its tuple like its IPv4 peer does). The capture decisions themselves, for both
// families and both modes, are the parity matrix's (parity.test.ts).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { status } from '../../src/instance/status.js';
import { runCli } from '../helpers/cli.js';
import { Mesh } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';

const SVC6 = 'fd00:96::20';
const SVC4 = '10.96.0.21';

privileged('IPv6 and dual-stack capture and splicing (eBPF)', () => {
  const instance = uniqueName('v6');
  let mesh: Mesh;

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [SVC6, SVC4], [
      { name: 'svc6', host: SVC6, port: 9080 },
      { name: 'svc4', host: SVC4, port: 9080 },
      // A dual-stack stand-in for the sidecar's outbound listener: IPv6 capture sends to ::1,
      // IPv4 (and IPv4-mapped) capture to 127.0.0.1, both reach it.
      { name: 'sidecar', host: '::', port: 15001, mode: 'origdst', inMesh: true },
    ], { sidecar: false, ipv6: true });
    const config = mesh.writeConfig(`services:
  - { name: web6, addresses: ['${SVC6}'], ports: [9080], splice: always }
  - { name: web4, addresses: [${SVC4}], ports: [9080], splice: always }
capture: { includeInboundPorts: [] }
`);
    const r = await runCli(['up', '--cgroup', mesh.cgroup, '--netns', mesh.netns, '--config', config, '--instance', instance]);
    expect(r.stderr).toBe('');
  });

  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  for (const [what, host, dst] of [
    ['an IPv6 client of an IPv6 service', SVC6, `${SVC6}:9080`],
    ['a dual-stack client (IPv6 socket) of an IPv4 service, through its mapped address', `::ffff:${SVC4}`, `${SVC4}:9080`],
  ] as const) {
    it(`captures and splices ${what}`, async () => {
      const before = (await status(instance)).counters;
      const c = await mesh.client(host, 9080);
      const first = await c.ask('first');
      expect(first.server).toBe('sidecar');
      const od = (first as unknown as { origDst: { address: string; port: number } }).origDst;
      expect(`${od.address}:${od.port}`).toBe(dst);
      for (let i = 0; i < 20; i++) expect((await c.ask(`line ${i}`)).line).toBe(`line ${i}`);
      const after = (await status(instance)).counters;
      expect(after.connectRewrites - before.connectRewrites).toBe(1);
      expect(after.origDstHits - before.origDstHits).toBe(1);
      expect(after.sockmapInserts - before.sockmapInserts).toBe(2);
      expect(after.sockmapRedirects - before.sockmapRedirects).toBeGreaterThanOrEqual(21); // at least one direction of every exchange
      c.close();
    });
  }
});
