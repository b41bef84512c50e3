// `sockmesh bench --soak [--minutes N]` (npm run soak): the agent under mixed load for N minutes on
// a private node (namespaces and cgroups this run makes and removes): in every pod a client making
// new captured connections one after another and a long-lived connection carrying numbered lines;
// a service switched in the file every 2 s and over the control socket every 5 s; the agent
// restarted every 20 s (SIGTERM and kill -9 in turn). Every 5 s it samples the agent's RSS and open
// descriptors and the entry counts of the maps, and at the end it fails when any of them grew
// (last third of the run against the first), when a connection failed, or a line came back wrong.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pinRoot } from '../bpf/bpffs.js';
import { mapPath, pinLayout } from '../bpf/pins.js';
import type { MapName } from '../bpf/programs.js';
import { execTool } from '../util/exec.js';
import { checkInterrupted } from '../util/interrupt.js';
import { packageRoot } from '../util/paths.js';
import { NodeTopology } from '../topology/node.js';
import { Proc } from '../topology/proc.js';

export interface SoakOptions {
  minutes: number;
  pods: number;
  services: number;
}

export interface SoakSample {
  t: number;
  rssMiB: number;
  fds: number;
  maps: Record<string, number>;
}

export interface SoakResult {
  options: SoakOptions;
  samples: SoakSample[];
  restarts: number;
  switches: number;
  connections: number;
  lines: number;
  problems: string[];
  ok: boolean;
}

/** Maps whose entry counts are watched: the active config, and the per-connection hand-over maps. */
const WATCHED: MapName[] = ['sm_services_a', 'sm_services_b', 'sm_cookie_dst', 'sm_tuple_dst', 'sm_peer_sk', 'sm_sockhash'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

function entries(path: string): number {
  try {
    return (JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', path], { encoding: 'utf8', maxBuffer: 256 << 20 })) as unknown[]).length;
  } catch {
    return -1;
  }
}

export async function runSoak(o: SoakOptions, progress: (m: string) => void): Promise<SoakResult> {
  const tag = `soak${process.pid}`;
  const instance = `${tag}g`;
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-soak-'));
  const cfgPath = join(dir, 'mesh.yaml');
  const podNames = Array.from({ length: o.pods }, (_, i) => `p${i}`);
  progress(`creating ${o.pods} pods`);
  const node = await NodeTopology.create(tag, podNames);
  const cli = join(packageRoot(), 'bin/sockmesh.js');
  const peer = 'dist/src/topology/peer.js';
  const addr = (i: number) => `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
  const config = (off: number) => {
    const lines = ['services:'];
    // Odd services are always spliced: the sockhash sees traffic too.
    for (let i = 0; i < o.services; i++) lines.push(`  - { name: s${i}, addresses: [${addr(i)}], ports: [9080]${i % 2 ? ', splice: always' : ''}${i === off ? ', redirect: false' : ''} }`);
    lines.push('pods:', ...podNames.map((p) => `  - { name: ${p}, cgroup: ${p}, netns: ${node.pod(p).netns} }`));
    return `${lines.join('\n')}\n`;
  };
  const save = (text: string) => {
    writeFileSync(`${cfgPath}.tmp`, text);
    renameSync(`${cfgPath}.tmp`, cfgPath);
  };
  const startAgent = async () => {
    const a = new Proc('agent', process.execPath, [cli, 'agent', '--config', cfgPath, '--cgroup', node.parent, '--instance', instance, '--listen', '127.0.0.1:0']);
    await a.waitFor((l) => l.msg === 'agent ready', 120_000);
    return a;
  };

  const problems: string[] = [];
  const samples: SoakSample[] = [];
  let agent: Proc | undefined;
  let restarts = 0;
  let switches = 0;
  const clients: Proc[] = [];
  try {
    // The pods' sidecars and clients. Service 0 is the one switched; the others stay captured.
    for (const p of podNames) {
      const sidecar = node.spawnNode(p, peer, ['serve', '--host', '127.0.0.1', '--port', '15001', '--name', 'sidecar', '--mode', 'origdst'], `sidecar ${p}`);
      await sidecar.waitFor((l) => l.event === 'ready', 30_000);
    }
    save(config(-1));
    progress('starting the agent');
    agent = await startAgent();
    const streams = podNames.map((p, i) => node.spawnNode(p, peer, ['ask', '--host', addr(1 + (i % (o.services - 1))), '--port', '9080'], `stream ${p}`));
    await Promise.all(streams.map((s) => s.waitFor((l) => l.event === 'connected', 30_000)));
    const repeats = podNames.map((p, i) => node.spawnNode(p, peer, ['repeat', '--host', addr(1 + ((i + 1) % (o.services - 1))), '--port', '9080'], `connections ${p}`));
    await Promise.all(repeats.map((r) => r.waitFor((l) => l.event === 'ready', 30_000)));
    clients.push(...streams, ...repeats);
    const sent = streams.map(() => [] as string[]);
    let seq = 0;
    const pump = setInterval(() => {
      streams.forEach((s, i) => {
        sent[i].push(`${i}-${seq}`);
        s.send(`${i}-${seq}`);
      });
      seq++;
    }, 50);

    const t0 = Date.now();
    const end = t0 + o.minutes * 60_000;
    let nextSample = t0;
    let nextSwitch = t0 + 2000;
    let nextOverride = t0 + 5000;
    let nextRestart = t0 + 20_000;
    let off = false;
    try {
      while (Date.now() < end) {
        checkInterrupted();
        const now = Date.now();
        if (now >= nextSample) {
          const pid = agent.pid;
          const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
          const fds = readdirSync(`/proc/${pid}/fd`).length;
          const layout = pinLayout(pinRoot(instance));
          const maps = Object.fromEntries(WATCHED.map((m) => [m, entries(mapPath(layout, m))]));
          samples.push({ t: Math.round((now - t0) / 1000), rssMiB: Math.round(rss * 10) / 10, fds, maps });
          progress(`${Math.round((now - t0) / 1000)} s: agent RSS ${rss.toFixed(1)} MiB, ${fds} fds, sockhash ${maps.sm_sockhash}, ${restarts} restarts, ${switches} switches`);
          nextSample += 5000;
        }
        if (now >= nextSwitch) {
          off = !off;
          save(config(off ? 0 : -1));
          switches++;
          nextSwitch += 2000;
        }
        if (now >= nextOverride) {
          const r = await execTool(process.execPath, [cli, 'service', switches % 2 ? 'disable' : 'enable', `s${o.services - 1}`, '--instance', instance]);
          if (r.code !== 0) problems.push(`service switch over the control socket failed: ${r.stderr.trim()}`);
          switches++;
          nextOverride += 5000;
        }
        if (now >= nextRestart) {
          agent.child.kill(restarts % 2 ? 'SIGKILL' : 'SIGTERM');
          await agent.exited;
          agent = await startAgent();
          restarts++;
          nextRestart += 20_000;
        }
        await sleep(100);
      }
    } finally {
      clearInterval(pump);
    }

    // Every line back in order; every new connection captured.
    progress('checking what the clients saw');
    let lines = 0;
    await Promise.all(streams.map((s, i) => s.waitFor(() => s.lines.filter((l) => l.event === 'reply').length >= sent[i].length, 30_000).catch(() => undefined)));
    streams.forEach((s, i) => {
      const got = s.lines.filter((l) => l.event === 'reply').map((l) => (l.reply as { line: string }).line);
      lines += got.length;
      if (s.lines.some((l) => l.event === 'error')) problems.push(`stream ${i}: the connection failed`);
      if (got.join('\n') !== sent[i].join('\n')) problems.push(`stream ${i}: ${got.length} of ${sent[i].length} lines back in order`);
    });
    let connections = 0;
    for (const [i, r] of repeats.entries()) {
      r.child.stdin!.end();
      const s = await r.waitFor((l) => l.event === 'summary', 30_000);
      connections += Number(s.total);
      const errors = s.errors as string[];
      const outcomes = Object.keys(s.outcomes as object);
      if (errors.length) problems.push(`pod ${podNames[i]}: ${errors.length} of ${s.total} new connections failed (${errors[0]})`);
      if (outcomes.some((k) => !k.startsWith('sidecar '))) problems.push(`pod ${podNames[i]}: connections not captured: ${outcomes.join(', ')}`);
    }

    // Growth: the last third of the run against the first.
    if (samples.length >= 6) {
      const third = Math.floor(samples.length / 3);
      const first = samples.slice(0, third);
      const last = samples.slice(-third);
      const grew = (what: string, f: (s: SoakSample) => number, slack: (base: number) => number) => {
        const a = median(first.map(f));
        const b = median(last.map(f));
        if (b > a + slack(a)) problems.push(`${what} grew: ${a} -> ${b} (median of the first and last third)`);
      };
      grew('agent RSS (MiB)', (s) => s.rssMiB, (a) => Math.max(8, a * 0.15));
      grew('agent open descriptors', (s) => s.fds, () => 4);
      for (const m of WATCHED) grew(`${m} entries`, (s) => s.maps[m], (a) => Math.max(64, a * 0.5));
    } else {
      problems.push(`only ${samples.length} samples: run for at least half a minute to judge growth`);
    }
    return { options: o, samples, restarts, switches, connections, lines, problems, ok: problems.length === 0 };
  } finally {
    progress('cleaning up');
    await agent?.kill();
    for (const c of clients) await c.kill();
    await execTool(process.execPath, [cli, 'down', '--instance', instance]);
    await node.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(`/run/sockmesh/${instance}.overrides.json`, { force: true });
  }
}

export function formatSoak(r: SoakResult): string {
  const head = ['t (s)', 'RSS MiB', 'fds', ...WATCHED];
  const rows = r.samples.map((s) => [String(s.t), s.rssMiB.toFixed(1), String(s.fds), ...WATCHED.map((m) => String(s.maps[m]))]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i].length)));
  const table = [head, ...rows].map((x) => x.map((c, i) => c.padStart(w[i])).join('  ')).join('\n');
  return `${table}

${r.options.minutes} min, ${r.options.pods} pods, ${r.options.services} services: ${r.restarts} agent restarts, ${r.switches} service switches, ${r.connections} new connections, ${r.lines} lines on long-lived connections
${r.ok ? 'ok: no growth, no failed connection, every line back in order' : `FAILED:\n${r.problems.map((p) => `  - ${p}`).join('\n')}`}`;
}
