// Connections opened under iptables rules survive `down` and a switch to eBPF mode: their NAT
// bindings live in conntrack, and the nat table (its hooks) stays while any of them is open.
// Deleting the emptied table used to reset them mid-stream (ECONNRESET after a few MB). Each
// stream is paced so that the change lands in its middle, and checked byte for byte (sha256).
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { countTranslated } from '../../src/iptables/apply.js';
import { cliJson, runCli } from '../helpers/cli.js';
import { Mesh, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';
import { natRules } from '../helpers/state.js';

const SVC = '10.96.0.20';
const nft = (netns: string) => execFileSync('ip', ['netns', 'exec', netns, 'nft', 'list', 'ruleset'], { encoding: 'utf8' });
const CONFIG = `services:\n  - { name: echo, addresses: [${SVC}], ports: [9090] }\n`;

it('counts only open connections whose reply tuple was rewritten (a REDIRECT) as translated', () => {
  const text = [
    'ipv4     2 tcp      6 431999 ESTABLISHED src=10.200.0.1 dst=10.96.0.20 sport=40000 dport=9090 src=127.0.0.1 dst=10.200.0.1 sport=15001 dport=40000 [ASSURED] mark=0 zone=0 use=2',
    'ipv4     2 tcp      6 431999 ESTABLISHED src=10.200.0.1 dst=10.200.0.2 sport=40001 dport=9090 src=10.200.0.2 dst=10.200.0.1 sport=9090 dport=40001 [ASSURED] mark=0 zone=0 use=2',
    'ipv4     2 tcp      6 110 TIME_WAIT src=10.200.0.1 dst=10.96.0.20 sport=40002 dport=9090 src=127.0.0.1 dst=10.200.0.1 sport=15001 dport=40002 [ASSURED] mark=0 zone=0 use=2',
    'ipv6     10 tcp      6 431999 ESTABLISHED src=fd00::1 dst=fd00::20 sport=40003 dport=9090 src=::1 dst=fd00::1 sport=15001 dport=40003 [ASSURED] mark=0 zone=0 use=2',
  ].join('\n');
  expect(countTranslated(text, 4)).toBe(1);
  expect(countTranslated(text, 6)).toBe(1);
});

privileged('live connections across down and a mode switch', () => {
  const instance = uniqueName('lc');
  let mesh: Mesh;
  let cfg = '';

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [SVC], [{ name: 'echo', host: SVC, port: 9090, mode: 'echo' }]);
    cfg = mesh.writeConfig(CONFIG);
  });

  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  /** A paced 6 MiB stream from the pod through the capture to the echo server (~2 s). */
  async function startStream() {
    const p = mesh.topo.spawnNode(PEER, ['stream', '--host', SVC, '--port', '9090', '--bytes', String(6 << 20), '--chunk', '65536', '--interval-ms', '20'],
      { cgroup: 'mesh', label: 'paced stream' });
    await p.waitFor((l) => l.event === 'progress', slow(10_000));
    return p;
  }

  async function finished(p: Awaited<ReturnType<typeof startStream>>) {
    const end = await p.waitFor((l) => l.event === 'done' || l.event === 'error', slow(60_000));
    expect(end.event, JSON.stringify(end)).toBe('done');
    expect(end.echoed).toBe(end.sent);
    expect(end.received).toBe(6 << 20);
  }

  it('down of an iptables instance leaves a connection it captured running, and says why its nat table stays', async () => {
    const up = await runCli(['up', '--mode', 'iptables', '--netns', mesh.netns, '--instance', instance, '--config', cfg]);
    expect(up.code, up.stderr).toBe(0);
    const seen = mesh.sidecarConnections().length;
    const p = await startStream();
    expect(mesh.sidecarConnections().length).toBe(seen + 1); // it was captured
    const down = await cliJson<{ rules: string; notes: string[] }>(['down', '--instance', instance]);
    expect(down.rules).toBe('removed');
    expect(down.notes.join('\n')).toMatch(/1 connection the rules translated is open; they keep working, so connection tracking stays on there \(chain SOCKMESH_DRAIN/);
    expect(natRules(mesh.netns).filter((r) => !r.includes('SOCKMESH_DRAIN'))).toEqual([]); // nothing captures any more
    await finished(p);
    // Once it has closed, the next up and down leave nothing behind: no drain chain, no nat table.
    expect((await runCli(['up', '--mode', 'iptables', '--netns', mesh.netns, '--instance', instance, '--config', cfg])).code).toBe(0);

    const again = await cliJson<{ notes: string[] }>(["down", "--instance", instance]);

    expect(again.notes).toEqual([]);
    expect(nft(mesh.netns)).not.toMatch(/table ip nat/);
  });

  it('a switch from iptables to eBPF mode leaves the connections the rules captured running, and eBPF captures new ones', async () => {
    expect((await runCli(['up', '--mode', 'iptables', '--netns', mesh.netns, '--instance', instance, '--config', cfg])).code).toBe(0);
    const p = await startStream();
    const sw = await cliJson<{ switchedFrom: string; notes?: string[] }>(['up', '--mode', 'ebpf', '--cgroup', mesh.cgroup, '--netns', mesh.netns, '--instance', instance, '--config', cfg]);
    expect(sw.switchedFrom).toBe('iptables');
    expect((sw.notes ?? []).join('\n')).toMatch(/1 connection the rules translated is open/);
    await finished(p);
    const before = (await cliJson<{ counters: { connectRewrites: number } }>(['status', '--instance', instance])).counters.connectRewrites;
    const q = await startStream();
    await finished(q);
    const after = (await cliJson<{ counters: { connectRewrites: number } }>(['status', '--instance', instance])).counters.connectRewrites;
    expect(after - before).toBe(1);
    // down of the eBPF instance removes the drain chain the old rules left, now that it is unused.
    expect((await cliJson<{ notes: string[] }>(['down', '--instance', instance])).notes).toEqual([]);
    expect(nft(mesh.netns)).not.toMatch(/SOCKMESH_DRAIN|table ip nat/);
  });
}, ['bpftool', 'ip', 'iptables-restore', 'nft']);
