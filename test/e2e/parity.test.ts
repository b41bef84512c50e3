// Behaviour parity of the two capture modes with istio-init: a matrix of real connections, each
// checked for where it lands (the outbound listener, the inbound listener, or its real
// destination) and what SO_ORIGINAL_DST says. Expected outcomes are written from istio-iptables'
// documented behaviour (ip6tables for IPv6: ::1 and ::6 where IPv4 has 127.0.0.1 and 127.0.0.6),
// and both modes must give them, for IPv4 and for IPv6, inbound included. A dual-stack client (an
// IPv6 socket to an IPv4-mapped address, Java's default) is captured like an IPv4 one. `sockmesh
// explain`'s own decision (a mirror of sm_decide, and of the rules) is checked against the same
// real connections: each pod-side case's verdict names where the connection landed.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { explain, type Verdict } from '../../src/instance/explain.js';
import { POD_IP, POD_IP6 } from '../../src/topology/topology.js';
import { runCli } from '../helpers/cli.js';
import { Mesh } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';

const APP = { uid: 4000, gid: 4000 };
const SIDECAR = { uid: 1337, gid: 1337 };
const SIDECAR_GID = { uid: 4242, gid: 1337 };

interface Case {
  name: string;
  /** Who connects: a uid/gid in the pod's mesh cgroup, or a peer in the remote namespace. */
  from: { uid: number; gid: number; bind?: string } | 'peer';
  host: string;
  port: number;
  /** Where it lands: 'outbound' / 'inbound' (sidecar listeners) or a server's name. */
  lands: string;
  origDst?: string;
}

interface Family {
  name: string;
  svc: string;
  outside: string;
  outsideCidr: string;
  pod: string;
  localhost: string;
  passthrough: string;
  any: string;
  /** Extra cases of this family. */
  extra: Case[];
}

const V4: Family = {
  name: 'IPv4', svc: '10.96.0.20', outside: '10.96.1.5', outsideCidr: '10.96.1.0/24', pod: POD_IP, localhost: '127.0.0.1', passthrough: '127.0.0.6', any: '0.0.0.0',
  extra: [
    { name: 'dual-stack app (IPv6 socket) to a remote service\'s IPv4-mapped address', from: APP, host: '::ffff:10.96.0.20', port: 9080, lands: 'outbound', origDst: '10.96.0.20:9080' },
  ],
};
const V6: Family = {
  name: 'IPv6', svc: 'fd00:96::20', outside: 'fd00:96:1::5', outsideCidr: 'fd00:96:1::/64', pod: POD_IP6, localhost: '::1', passthrough: '::6', any: '::', extra: [],
};

/** The 13 cases of istio-init's behaviour, in one family's addresses. */
function cases(f: Family): Case[] {
  return [
    { name: 'app to a remote service', from: APP, host: f.svc, port: 9080, lands: 'outbound', origDst: `${f.svc}:9080` },
    { name: 'sidecar uid to a remote service', from: SIDECAR, host: f.svc, port: 9080, lands: 'svc' },
    { name: 'sidecar gid (other uid) to a remote service', from: SIDECAR_GID, host: f.svc, port: 9080, lands: 'svc' },
    { name: 'app to an excluded CIDR', from: APP, host: f.outside, port: 9080, lands: 'outside' },
    { name: 'app to an excluded port', from: APP, host: f.svc, port: 9082, lands: 'admin' },
    { name: `app to ${f.localhost}`, from: APP, host: f.localhost, port: 9090, lands: 'local-app' },
    { name: 'app to its own pod IP', from: APP, host: f.pod, port: 9090, lands: 'local-app' },
    { name: 'sidecar to its own pod IP (inbound)', from: SIDECAR, host: f.pod, port: 9090, lands: 'inbound', origDst: `${f.pod}:9090` },
    { name: 'sidecar to its own pod IP on 15008', from: SIDECAR, host: f.pod, port: 15008, lands: 'hbone' },
    { name: `sidecar from ${f.passthrough} to its own pod IP`, from: { ...SIDECAR, bind: f.passthrough }, host: f.pod, port: 9090, lands: 'local-app' },
    { name: 'peer to an app port', from: 'peer', host: f.pod, port: 9090, lands: 'inbound', origDst: `${f.pod}:9090` },
    { name: 'peer to 15008', from: 'peer', host: f.pod, port: 15008, lands: 'hbone' },
    { name: 'peer to 15090', from: 'peer', host: f.pod, port: 15090, lands: 'prom' },
    ...f.extra,
  ];
}

for (const fam of [V4, V6]) {
  privileged(`capture parity with istio-init, ${fam.name} (iptables and eBPF on the same processes)`, () => {
    const instance = uniqueName('p');
    const CASES = cases(fam);
    let mesh: Mesh;
    let config: string;

    beforeAll(async () => {
      const v6 = fam === V6;
      mesh = await Mesh.create(instance, [fam.svc, fam.outside], [
        { name: 'svc', host: fam.svc, port: 9080 },
        { name: 'admin', host: fam.svc, port: 9082 },
        { name: 'outside', host: fam.outside, port: 9080 },
        { name: 'local-app', host: fam.any, port: 9090, local: true },
        { name: 'hbone', host: fam.any, port: 15008, local: true },
        { name: 'prom', host: fam.any, port: 15090, local: true },
        // The sidecar's listeners: the outbound one where each family's capture sends it (::1 for
        // IPv6; the dual-stack case reaches the IPv4 one), the inbound one on every address.
        { name: 'outbound', host: fam.localhost, port: 15001, mode: 'origdst', inMesh: true },
        { name: 'inbound', host: fam.any, port: 15006, mode: 'origdst', inMesh: true },
      ], { sidecar: false, ipv6: v6, podAddresses: v6 ? ['::6'] : [] });
      config = mesh.writeConfig(`services: []\ncapture: { outbound: all, excludeOutboundCIDRs: ['${fam.outsideCidr}'], excludeOutboundPorts: [9082] }\n`);
    });

    afterAll(async () => {
      await runCli(['down', '--instance', instance]);
      await mesh?.close();
    });

    function connect(c: Case): { server: string; origDst?: { address: string; port: number } } {
      let out: string;
      if (c.from === 'peer') {
        out = execFileSync('ip', ['netns', 'exec', mesh.topo.remoteNetns!, 'timeout', '5', 'bash', '-c',
          `exec 3<>/dev/tcp/${c.host}/${c.port}; echo ${JSON.stringify(c.name)} >&3; head -n1 <&3`], { encoding: 'utf8' });
      } else if (c.from.bind) {
        const to = c.host.includes(':') ? `TCP6:[${c.host}]:${c.port},bind=[${c.from.bind}]` : `TCP:${c.host}:${c.port},bind=${c.from.bind}`;
        out = mesh.runAs(c.from.uid, c.from.gid, `echo probe | timeout 5 socat -t1 - ${to}`);
      } else {
        out = mesh.runAs(c.from.uid, c.from.gid, `exec 3<>/dev/tcp/${c.host}/${c.port}; echo probe >&3; timeout 5 head -n1 <&3`);
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
        const want = CASES.map((c) => ({ name: c.name, lands: c.lands, ...(c.origDst ? { origDst: c.origDst } : {}) }));
        expect(got).toEqual(want);
        // explain, for every connection the pod makes, against where the real one landed.
        const landed = (v: Verdict) => (v === 'sidecar-outbound' ? 'outbound' : v === 'sidecar-inbound' ? 'inbound' : 'direct');
        const fromPod = CASES.flatMap((c, i) => (c.from === 'peer' ? [] : [{ c, from: c.from, lands: got[i].lands }]));
        const explained = await Promise.all(fromPod.map(async ({ c, from }) => {
          const dst = c.host.includes(':') && !c.host.startsWith('::ffff:') ? `[${c.host}]:${c.port}` : `${c.host.replace(/^::ffff:/, '')}:${c.port}`;
          const e = await explain({ instance, destination: dst, uid: from.uid, gid: from.gid, source: from.bind });
          return { name: c.name, lands: landed(e.verdict), rule: e.rule };
        }));
        expect(explained.map(({ name, lands }) => ({ name, lands })))
          .toEqual(fromPod.map(({ c, lands }) => ({ name: c.name, lands: lands === 'outbound' || lands === 'inbound' ? lands : 'direct' })));
        expect(explained.length).toBe(CASES.length - 3);
      });
    }

    it('after the switch to eBPF no sockmesh rules are left in the namespace (iptables or ip6tables)', () => {
      for (const save of ['iptables-save', 'ip6tables-save']) {
        expect(execFileSync('ip', ['netns', 'exec', mesh.netns, save, '-t', 'nat'], { encoding: 'utf8' })).not.toMatch(/SOCKMESH/);
      }
    });
  });
}
