// In-place program upgrade (the lifecycle issue): the cgroup programs are pinned bpf_links, and a
// new BPF object replaces the running programs by link update while traffic flows: no stream
// resets, no connection made during the upgrade escapes capture, the links stay the same links. An
// object whose maps have another layout is refused with the map named, and nothing changes.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { linkPath, pinLayout } from '../../src/bpf/pins.js';
import { programStatus } from '../../src/bpf/attach.js';
import { pinRoot } from '../../src/bpf/bpffs.js';
import { InstanceMaps } from '../../src/bpf/maps.js';
import { PROGRAMS } from '../../src/bpf/programs.js';
import { NodeTopology } from '../../src/topology/node.js';
import type { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

interface LinkShow { id: number; type: string; prog_id: number; cgroup_id?: number }

privileged('in-place program upgrade', () => {
  const instance = uniqueName('u');
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const cfgPath = join(dir, 'mesh.yaml');
  const prebuilt = process.env.SOCKMESH_BPF_VARIANTS;
  const variant = join(prebuilt ?? dir, 'variant');
  const otherLayout = join(prebuilt ?? dir, 'layout');
  let node: NodeTopology;
  const layout = () => pinLayout(pinRoot(instance));
  const cgroupLinks = (): LinkShow[] => {
    const all = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as LinkShow[];
    const ids = new Set(programStatus(layout(), node.parent).map((p) => p.id));
    return all.filter((l) => l.type === 'cgroup' && ids.has(l.prog_id));
  };

  beforeAll(async () => {
    node = await NodeTopology.create(instance, ['a']);
    const sidecar = node.spawnNode('a', PEER, ['serve', '--host', '127.0.0.1', '--port', '15001', '--name', 'sidecar', '--mode', 'origdst'], 'sidecar');
    await sidecar.waitFor((l) => l.event === 'ready', slow(30_000));
    writeFileSync(cfgPath, `services:
  - { name: spliced, addresses: [10.96.0.30], ports: [9080], splice: always }
  - { name: plain, addresses: [10.96.0.31], ports: [9080], splice: never }
  - { name: probe, addresses: [10.96.0.32], ports: [9080] }
pods:
  - { name: pod-a, cgroup: a, netns: ${node.pod('a').netns} }
`);
    // Two other builds of the same sources: other instructions (-mcpu=v3), and another map layout
    // (built here, or by the host of the VM lane, whose guest has no clang).
    if (!prebuilt) {
      execFileSync('make', ['-s', '-C', 'bpf', `OUT=${variant}`, 'EXTRA_CFLAGS=-mcpu=v3'], { stdio: 'ignore' });
      execFileSync('make', ['-s', '-C', 'bpf', `OUT=${otherLayout}`, 'EXTRA_CFLAGS=-DSM_MAX_PODS=2048'], { stdio: 'ignore' });
    }
  });

  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await node?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('attaches the cgroup programs as pinned links and replaces them in place under traffic', async () => {
    const up = await runCli(['up', '--cgroup', node.parent, '--config', cfgPath, '--instance', instance, '--json']);
    expect(up.code, up.stderr).toBe(0);
    for (const p of PROGRAMS.filter((x) => x.target === 'cgroup')) expect(existsSync(linkPath(layout(), p)), p.name).toBe(true);
    const linksBefore = cgroupLinks();
    expect(linksBefore).toHaveLength(PROGRAMS.filter((p) => p.target === 'cgroup').length); // one link per cgroup program
    const idsBefore = programStatus(layout(), node.parent);
    expect(idsBefore.every((p) => p.attached)).toBe(true);

    // Three long-lived connections (two spliced) and a client making new connections throughout.
    const hosts = ['10.96.0.30', '10.96.0.30', '10.96.0.31'];
    const streams: Proc[] = hosts.map((h, i) => node.spawnNode('a', PEER, ['ask', '--host', h, '--port', '9080'], `stream ${i}`));
    await Promise.all(streams.map((s) => s.waitFor((l) => l.event === 'connected', slow(10_000))));
    const repeat = node.spawnNode('a', PEER, ['repeat', '--host', '10.96.0.32', '--port', '9080'], 'new connections');
    await repeat.waitFor((l) => l.event === 'ready', slow(10_000));
    const sent: string[][] = hosts.map(() => []);
    let seq = 0;
    const pump = setInterval(() => {
      streams.forEach((s, i) => {
        sent[i].push(`c${i}-${seq}`);
        s.send(`c${i}-${seq}`);
      });
      seq++;
    }, 5);
    // What splice: auto learned is in the old programs' format: the upgrade clears it. A service
    // with splice: never learns nothing from traffic, so a value planted there can only be cleared.
    const plainId = (JSON.parse((await runCli(['status', '--instance', instance, '--json'])).stdout) as { services: Array<{ name: string; id: number }> })
      .services.find((s) => s.name === 'plain')!.id;
    const planted = new InstanceMaps(layout());
    try {
      planted.svcAuto.set(plainId, { nagleClients: 2, bulk: 1, observed: 1000 });
    } finally {
      planted.close();
    }
    let upgrade;
    try {
      await new Promise((r) => setTimeout(r, 300));
      upgrade = await runCli(['up', '--cgroup', node.parent, '--config', cfgPath, '--instance', instance, '--bpf-object', join(variant, 'sockmesh.bpf.o'), '--json']);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      clearInterval(pump);
    }
    expect(upgrade.code, upgrade.stderr).toBe(0);
    const replaced = (JSON.parse(upgrade.stdout) as { upgraded: Array<{ name: string; from: number; to: number }> }).upgraded;
    expect(replaced.map((r) => r.name).sort()).toEqual(PROGRAMS.map((p) => p.name).sort());
    for (const r of replaced) expect(r.to, r.name).not.toBe(r.from);

    // The same links, now running the new programs; the pins name what runs.
    const idsAfter = programStatus(layout(), node.parent);
    expect(idsAfter.every((p) => p.attached)).toBe(true);
    expect(idsAfter.map((p) => p.id)).toEqual(PROGRAMS.map((p) => replaced.find((r) => r.name === p.name)!.to));
    const maps = new InstanceMaps(layout());
    try {
      expect(maps.svcAuto.get(plainId)).toEqual({ nagleClients: 0, bulk: 0, observed: 0 });
    } finally {
      maps.close();
    }
    const linksAfter = cgroupLinks();
    expect(linksAfter.map((l) => l.id).sort()).toEqual(linksBefore.map((l) => l.id).sort());
    // The same object again: nothing to upgrade (the record names the object the pins came from).
    const again = await runCli(['up', '--cgroup', node.parent, '--config', cfgPath, '--instance', instance, '--bpf-object', join(variant, 'sockmesh.bpf.o'), '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).upgraded).toBeUndefined();
    expect(programStatus(layout(), node.parent)).toEqual(idsAfter);

    // Every new connection during the upgrade reached the sidecar with its destination.
    repeat.child.stdin!.end();
    const summary = await repeat.waitFor((l) => l.event === 'summary', slow(10_000));
    expect(summary.errors).toEqual([]);
    expect(Object.keys(summary.outcomes as object)).toEqual(['sidecar 10.96.0.32:9080']);
    expect(summary.total as number).toBeGreaterThan(10);

    // Streams: every line back, in order, from the sidecar; no resets.
    await Promise.all(streams.map((s, i) => s.waitFor(() => s.lines.filter((l) => l.event === 'reply').length >= sent[i].length, slow(30_000))));
    streams.forEach((s, i) => {
      expect(s.lines.filter((l) => l.event === 'error'), `stream ${i}`).toEqual([]);
      expect(s.lines.filter((l) => l.event === 'reply').map((l) => (l.reply as { line: string }).line), `stream ${i}`).toEqual(sent[i]);
      s.child.stdin!.end();
    });
  });

  it('refuses an object whose maps have another layout, naming them, and changes nothing', async () => {
    const before = programStatus(layout(), node.parent);
    const links = cgroupLinks();
    const r = await runCli(['up', '--cgroup', node.parent, '--config', cfgPath, '--instance', instance, '--bpf-object', join(otherLayout, 'sockmesh.bpf.o')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/changes the layout of sm_pods_a \(running: .*1024 entries.*new: .*2048 entries/);
    expect(r.stderr).toMatch(/sockmesh down and up again/);
    expect(programStatus(layout(), node.parent)).toEqual(before);
    expect(cgroupLinks()).toEqual(links);
    expect(existsSync(`${layout().root}/staging`)).toBe(false);
  });
}, process.env.SOCKMESH_BPF_VARIANTS ? ['bpftool', 'ip'] : ['bpftool', 'ip', 'clang', 'make']);
