// End to end in eBPF mode, in a private namespace and cgroup: capture to the sidecar with the
// original destination, splicing through sockmap, exclusions, the per-service switch, and down.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { status as instanceStatus, type InstanceStatus } from '../../src/instance/status.js';
import { pinLayout } from '../../src/bpf/pins.js';
import { InstanceMaps } from '../../src/bpf/maps.js';
import { cliJson, runCli } from '../helpers/cli.js';
import { Mesh } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const SVC = '10.96.0.20';
const OUTSIDE = '10.96.1.5'; // in the excluded CIDR

for (const mode of ['ebpf', 'iptables'] as const) privileged(`capture end to end, ${mode} mode`, () => {
  const instance = uniqueName(mode === 'ebpf' ? 'e' : 'i');
  const ebpf = mode === 'ebpf';
  const where = () => (ebpf ? ['--cgroup', mesh.cgroup] : ['--netns', mesh.netns]);
  let mesh: Mesh;
  let isUp = false;
  let config = '';
  // Counters are read in-process (a CLI start costs seconds under emulation, in the VM lane);
  // the CLI's own status --json is checked below.
  const status = () => instanceStatus(instance);

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [SVC, OUTSIDE], [
      { name: 'reviews', host: SVC, port: 9080 },
      { name: 'ratings', host: SVC, port: 9081 },
      { name: 'admin', host: SVC, port: 9082 },
      { name: 'outside', host: OUTSIDE, port: 9080 },
      { name: 'bulk', host: SVC, port: 9090, mode: 'echo' },
    ]);
    config = mesh.writeConfig(`
sidecar: { uid: 1337, outboundPort: 15001, inboundPort: 15006 }
services:
  - { name: reviews, addresses: [${SVC}], ports: [9080], splice: always }
  - { name: ratings, addresses: [${SVC}], ports: [9081], splice: always }
  - { name: admin, addresses: [${SVC}], ports: [9082] }
  - { name: outside, ports: [9080] }
  - { name: bulk, addresses: [${SVC}], ports: [9090], splice: always }
exclude: { outboundPorts: [9082], outboundCIDRs: [10.96.1.0/24] }
`);
    const r = await runCli(['up', '--mode', mode, ...where(), '--config', config, '--instance', instance, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    isUp = true;
    // A second up with the same config is harmless: nothing attached twice, no map writes.
    const again = JSON.parse((await runCli(['up', '--mode', mode, ...where(), '--config', config, '--instance', instance, '--json'])).stdout);
    expect(again).toMatchObject({ created: false, attached: [], changes: {} });
    if (!ebpf) {
      const rules = execFileSync('ip', ['netns', 'exec', mesh.netns, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });
      expect(rules.split('\n').filter((l) => l === '-A OUTPUT -p tcp -j SOCKMESH_OUTPUT')).toHaveLength(1);
    }
  });

  afterAll(async () => {
    if (isUp) await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  it('captures a meshed connection to the sidecar, which reads SO_ORIGINAL_DST and forwards it', async () => {
    const before = (await status()).counters;
    const { client, reply } = await mesh.request(SVC, 9080, 'hello');
    expect(reply).toMatchObject({ server: 'reviews', local: `${SVC}:9080`, line: 'hello' });
    const conns = mesh.sidecarConnections();
    expect(conns).toHaveLength(1);
    expect(conns[0]).toMatchObject({ peer: client.local, originalDst: { address: SVC, port: 9080 } });
    // The server's peer is the sidecar's upstream socket, not the client.
    expect(reply.peer).not.toBe(client.local);
    const after = (await status()).counters;
    expect(after.connectRewrites - before.connectRewrites).toBe(1);
    if (ebpf) {
      expect(after.origDstHits - before.origDstHits).toBe(1);
      // The sidecar's upstream hop (server outside the cgroup) is left to the normal stack: only
      // the app's socket and the sidecar's accepted socket were put into the sockhash.
      expect(after.sockmapInserts - before.sockmapInserts).toBe(2);
      expect(after.errors).toBe(0);
    }
  });

  it(`carries 64 MiB each way byte-identical${mode === 'ebpf' ? ', spliced through sockmap in both directions' : ''}`, async () => {
    const before = (await status()).counters;
    const total = 64 * 1024 * 1024;
    const proc = mesh.topo.spawnNode('dist/src/topology/peer.js', ['stream', '--host', SVC, '--port', '9090', '--bytes', String(total)], { cgroup: 'mesh', label: 'stream' });
    const during = await proc.waitFor((l) => l.event === 'done' || l.event === 'error', slow(120_000));
    expect(during.event).toBe('done');
    expect(during.received).toBe(total);
    expect(during.echoed).toBe(during.sent);
    if (!ebpf) return;
    const after = (await status()).counters;
    expect(after.sockmapInserts - before.sockmapInserts).toBe(2);
    // Every message of both spliced sockets found its peer: none fell back for want of one.
    expect(after.passThroughs - before.passThroughs).toBe(0);
    // 64 MiB each way in at most 64 KiB writes: at least 1024 messages a direction, each either
    // redirected or, while the reader lagged (full receive buffer, stack bytes unread), carried
    // by the stack.
    const delta = (k: string) => after[k] - before[k];
    expect(delta('sockmapRedirects')).toBeGreaterThan(0);
    expect(delta('sockmapRedirects') + delta('msgReceiverFull') + delta('msgOrderHolds')).toBeGreaterThanOrEqual(2 * 1024);
  });

  if (ebpf) it('keeps both ends of a live spliced connection in the sockhash', async () => {
    const client = await mesh.client(SVC, 9081);
    await client.ask('hold');
    const [cip, cport] = client.local.split(':');
    const maps = new InstanceMaps(pinLayout(`/sys/fs/bpf/sockmesh-${instance}`));
    const ports = maps.sockhash.entries().map(([k]) => [k.sport, k.dport]);
    maps.close();
    expect(ports).toContainEqual([Number(cport), 15001]);
    expect(ports).toContainEqual([15001, Number(cport)]);
    expect(cip).toBe('127.0.0.1');
    client.close();
  });

  it('never captures the sidecar uid or gid, excluded ports or excluded CIDRs', async () => {
    const before = (await status()).counters;
    const seen = mesh.sidecarConnections().length;
    // A process with the sidecar's gid (another uid) connects straight to the service.
    const direct = mesh.runAs(4242, 1337, `exec 3<>/dev/tcp/${SVC}/9080; echo gid >&3; head -n1 <&3`);
    expect(JSON.parse(direct)).toMatchObject({ server: 'reviews', line: 'gid' });
    const port = await mesh.request(SVC, 9082, 'port');
    expect(port.reply).toMatchObject({ server: 'admin', peer: port.client.local });
    const cidr = await mesh.request(OUTSIDE, 9080, 'cidr');
    expect(cidr.reply).toMatchObject({ server: 'outside', peer: cidr.client.local });
    expect(mesh.sidecarConnections()).toHaveLength(seen);
    const after = (await status()).counters;
    expect(after.connectRewrites).toBe(before.connectRewrites);
    if (ebpf) {
      expect(after.connectSidecarSkips - before.connectSidecarSkips).toBe(1);
      expect(after.connectExcludedSkips - before.connectExcludedSkips).toBe(2);
    }
  });

  it('switches one service off and on for new connections while live ones keep working', async () => {
    const live = await mesh.client(SVC, 9080);
    expect((await live.ask('before')).peer).not.toBe(live.local);
    const off = await runCli(['service', 'disable', 'reviews', '--instance', instance]);
    expect(off.code).toBe(0);
    const st = await status();
    expect(st.services.find((s) => s.name === 'reviews')?.redirect).toBe(false);
    expect(st.services.find((s) => s.name === 'ratings')?.redirect).toBe(true);

    const before = st.counters;
    const direct = await mesh.request(SVC, 9080, 'direct');
    expect(direct.reply.peer).toBe(direct.client.local); // straight to the server
    expect(direct.client.remote).toBe(`${SVC}:9080`);
    const mid = (await status()).counters;
    expect(mid.connectRewrites).toBe(before.connectRewrites);
    if (ebpf) {
      expect(mid.sockmapInserts).toBe(before.sockmapInserts);
      expect(mid.connectDisabledSkips - before.connectDisabledSkips).toBe(1);
    }
    // Other services are untouched.
    const other = await mesh.request(SVC, 9081, 'other');
    expect(other.reply.peer).not.toBe(other.client.local);
    // The connection opened before the switch still works, through the sidecar.
    expect(await live.ask('after')).toMatchObject({ server: 'reviews', line: 'after' });

    expect((await runCli(['service', 'enable', 'reviews', '--instance', instance])).code).toBe(0);
    const back = await mesh.request(SVC, 9080, 'back');
    expect(back.reply.peer).not.toBe(back.client.local);
    expect(mesh.sidecarConnections().at(-1)).toMatchObject({ peer: back.client.local, originalDst: { address: SVC, port: 9080 } });
    live.close();
  });

  if (ebpf) it('adopts its pins when started again (agent restart): same programs, live connections keep working', async () => {
    const live = await mesh.client(SVC, 9081);
    expect((await live.ask('before')).peer).not.toBe(live.local);
    const ids = (await status()).programs.map((p) => p.id);
    const r = await runCli(['up', '--mode', mode, ...where(), '--config', config, '--instance', instance, '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ created: false, attached: [], changes: {} });
    expect((await status()).programs.map((p) => p.id)).toEqual(ids);
    expect(await live.ask('after')).toMatchObject({ server: 'ratings', line: 'after' });
    live.close();
  });

  it('rejects an unknown service name without changing anything', async () => {
    const r = await runCli(['service', 'disable', 'nope', '--instance', instance]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no service "nope".*services: reviews, ratings, admin, outside, bulk/);
  });

  it('shows programs attached and services in status', async () => {
    const st = await cliJson<InstanceStatus>(['status', '--instance', instance]);
    expect(st).toMatchObject({ instance, mode, cgroup: ebpf ? mesh.cgroup : null, netns: ebpf ? null : mesh.netns });
    expect(st.programs.map((p) => [p.name, p.attached])).toEqual(ebpf ? [
      ['sm_connect4', true], ['sm_connect6', true], ['sm_sockops', true], ['sm_getsockopt', true], ['sm_getpeername4', true], ['sm_getpeername6', true],
      ['sm_sendmsg4', true], ['sm_recvmsg4', true],
      // sk_lookup goes to pod namespaces: the single-pod form without --netns names none.
      ['sm_inbound', false], ['sm_msg', true],
    ] : []);
    expect(st.services).toHaveLength(5);
  });

  it('down leaves nothing: no pins, nothing attached to the cgroup, no rules, no record', async () => {
    const r = await runCli(['down', '--instance', instance, '--json']);
    expect(r.code).toBe(0);
    isUp = false;
    expect(JSON.parse(r.stdout)).toMatchObject({ instance, removed: true });
    expect(existsSync(`/sys/fs/bpf/sockmesh-${instance}`)).toBe(false);
    expect(execFileSync('bpftool', ['cgroup', 'show', mesh.cgroup], { encoding: 'utf8' }).trim()).toBe('');
    expect(execFileSync('ip', ['netns', 'exec', mesh.netns, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' })).not.toMatch(/SOCKMESH/);
    const st = await runCli(['status', '--instance', instance]);
    expect(st.code).toBe(2);
    expect(st.stderr).toMatch(/no sockmesh instance/);
    // Without sockmesh the same client goes straight to the server.
    const plain = await mesh.request(SVC, 9080, 'plain');
    expect(plain.reply.peer).toBe(plain.client.local);
    // A second down is harmless.
    expect(JSON.parse((await runCli(['down', '--instance', instance, '--json'])).stdout)).toMatchObject({ instance, removed: false, detached: [] });
  });
});
