// Behaviour parity of the two capture modes with istio-init: a matrix of real connections, each
// checked for where it lands (the outbound listener, the inbound listener, or its real
// destination) and what SO_ORIGINAL_DST says. Expected outcomes are written from istio-iptables'
// documented behaviour; the one eBPF difference (no inbound capture) is in the README.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { POD_IP } from '../../src/topology/topology.js';
import { runCli } from '../helpers/cli.js';
import { Mesh } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';

const SVC = '10.96.0.20';
const OUTSIDE = '10.96.1.5';
const APP = { uid: 4000, gid: 4000 };
const SIDECAR = { uid: 1337, gid: 1337 };
const SIDECAR_GID = { uid: 4242, gid: 1337 };

interface Case {
  name: string;
  /** Who connects: a uid/gid in the pod's mesh cgroup, or a peer in the remote namespace. */
  from: { uid: number; gid: number; bind?: string } | 'peer';
  to: string;
  /** Where it lands: 'outbound' / 'inbound' (sidecar listeners) or a server's name. */
  lands: string;
  origDst?: string;
  /** A documented eBPF-mode difference. */
  ebpf?: { lands: string; origDst?: string };
}

const CASES: Case[] = [
  { name: 'app to a remote service', from: APP, to: `${SVC}:9080`, lands: 'outbound', origDst: `${SVC}:9080` },
  { name: 'sidecar uid to a remote service', from: SIDECAR, to: `${SVC}:9080`, lands: 'svc' },
  { name: 'sidecar gid (other uid) to a remote service', from: SIDECAR_GID, to: `${SVC}:9080`, lands: 'svc' },
  { name: 'app to an excluded CIDR', from: APP, to: `${OUTSIDE}:9080`, lands: 'outside' },
  { name: 'app to an excluded port', from: APP, to: `${SVC}:9082`, lands: 'admin' },
  { name: 'app to 127.0.0.1', from: APP, to: '127.0.0.1:9090', lands: 'local-app' },
  { name: 'app to its own pod IP', from: APP, to: `${POD_IP}:9090`, lands: 'local-app' },
  { name: 'sidecar to its own pod IP (inbound)', from: SIDECAR, to: `${POD_IP}:9090`, lands: 'inbound', origDst: `${POD_IP}:9090` },
  { name: 'sidecar to its own pod IP on 15008', from: SIDECAR, to: `${POD_IP}:15008`, lands: 'hbone' },
  { name: 'sidecar from 127.0.0.6 to its own pod IP', from: { ...SIDECAR, bind: '127.0.0.6' }, to: `${POD_IP}:9090`, lands: 'local-app' },
  { name: 'peer to an app port', from: 'peer', to: `${POD_IP}:9090`, lands: 'inbound', origDst: `${POD_IP}:9090` },
  { name: 'peer to 15008', from: 'peer', to: `${POD_IP}:15008`, lands: 'hbone' },
  { name: 'peer to 15090', from: 'peer', to: `${POD_IP}:15090`, lands: 'prom' },
];

privileged('capture parity with istio-init (iptables and eBPF on the same processes)', () => {
  const instance = uniqueName('p');
  let mesh: Mesh;
  let config: string;

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [SVC, OUTSIDE], [
      { name: 'svc', host: SVC, port: 9080 },
      { name: 'admin', host: SVC, port: 9082 },
      { name: 'outside', host: OUTSIDE, port: 9080 },
      { name: 'local-app', host: '0.0.0.0', port: 9090, local: true },
      { name: 'hbone', host: '0.0.0.0', port: 15008, local: true },
      { name: 'prom', host: '0.0.0.0', port: 15090, local: true },
      { name: 'outbound', host: '127.0.0.1', port: 15001, mode: 'origdst', inMesh: true },
      { name: 'inbound', host: '0.0.0.0', port: 15006, mode: 'origdst', inMesh: true },
    ], { sidecar: false });
    config = mesh.writeConfig(`services: []\ncapture: { outbound: all, excludeOutboundCIDRs: [${OUTSIDE.replace(/\.\d+$/, '.0')}/24], excludeOutboundPorts: [9082] }\n`);
  });

  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  function connect(c: Case): { server: string; origDst?: { address: string; port: number } } {
    const [host, port] = c.to.split(':');
    let out: string;
    if (c.from === 'peer') {
      out = execFileSync('ip', ['netns', 'exec', mesh.topo.remoteNetns!, 'timeout', '5', 'bash', '-c',
        `exec 3<>/dev/tcp/${host}/${port}; echo ${JSON.stringify(c.name)} >&3; head -n1 <&3`], { encoding: 'utf8' });
    } else if (c.from.bind) {
      out = mesh.runAs(c.from.uid, c.from.gid, `echo probe | timeout 5 socat -t1 - TCP:${host}:${port},bind=${c.from.bind}`);
    } else {
      out = mesh.runAs(c.from.uid, c.from.gid, `exec 3<>/dev/tcp/${host}/${port}; echo probe >&3; timeout 5 head -n1 <&3`);
    }
    return JSON.parse(out.trim().split('\n')[0]);
  }

  for (const mode of ['iptables', 'ebpf'] as const) {
    it(`${mode} mode decides like istio-init`, async () => {
      // The second iteration switches the live instance: same listeners, same servers.
      const where = mode === 'ebpf' ? ['--cgroup', mesh.cgroup, '--netns', mesh.netns] : ['--netns', mesh.netns];
      const r = await runCli(['up', '--mode', mode, ...where, '--config', config, '--instance', instance, '--json']);
      expect(r.stderr).toBe('');
      if (mode === 'ebpf') expect(JSON.parse(r.stdout).switchedFrom).toBe('iptables');
      const got = CASES.map((c) => {
        const res = connect(c);
        const origDst = res.origDst ? `${res.origDst.address}:${res.origDst.port}` : undefined;
        return { name: c.name, lands: res.server, ...(origDst ? { origDst } : {}) };
      });
      const want = CASES.map((c) => {
        const e = mode === 'ebpf' && c.ebpf ? c.ebpf : c;
        return { name: c.name, lands: e.lands, ...(e.origDst ? { origDst: e.origDst } : {}) };
      });
      expect(got).toEqual(want);
    });
  }

  it('after the switch to eBPF no sockmesh rules are left in the namespace', () => {
    expect(execFileSync('ip', ['netns', 'exec', mesh.netns, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' })).not.toMatch(/SOCKMESH/);
  });
});
