// The benchmark runs end to end (quick), produces every mode and every row, writes a JSON and an
// SVG, and leaves nothing behind. Its speed is not asserted here: that is what its ratios are for.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { STATE_DIR } from '../../src/instance/record.js';
import { MODES } from '../../src/bench/env.js';
import { bestEbpf, type BenchResult } from '../../src/bench/run.js';
import { formatTable } from '../../src/bench/report.js';
import { ratio, spread } from '../../src/bench/stats.js';
import { WORKLOADS } from '../../src/bench/workloads.js';
import { packageRoot } from '../../src/util/paths.js';
import { runCli } from '../helpers/cli.js';
import { leftovers } from '../helpers/leftovers.js';
import { privileged } from '../helpers/privileged.js';

describe('bench statistics', () => {
  it('names the best eBPF mode of a figure and how far behind the default is', () => {
    const s = (median: number) => ({ min: median, median, max: median, n: 1 });
    expect(bestEbpf({ 'ebpf-capture': s(100), 'ebpf-splice': s(120), 'ebpf-default': s(90) }, 'higher'))
      .toEqual({ bestEbpf: { mode: 'ebpf-splice', defaultBehind: 0.25 } });
    expect(bestEbpf({ 'ebpf-capture': s(50), 'ebpf-splice': s(40), 'ebpf-default': s(40) }, 'lower'))
      .toEqual({ bestEbpf: { mode: 'ebpf-splice', defaultBehind: 0 } });
    expect(bestEbpf({ 'ebpf-default': s(40) }, 'lower')).toEqual({});
  });

  it('summarises repeats as min/median/max and compares medians', () => {
    expect(spread([3, 1, 2])).toEqual({ min: 1, median: 2, max: 3, n: 3 });
    expect(spread([4, 1, 2, 3]).median).toBe(2.5);
    expect(ratio(spread([1.5]), spread([1]))).toBe(1.5);
  });
});

/** Structural validation of the bench JSON: every field a script reads, with finite numbers. */
function validate(res: BenchResult): string[] {
  const errors: string[] = [];
  const finite = (v: unknown, where: string) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) errors.push(`${where} is not a finite number: ${String(v)}`);
  };
  if (typeof res.kernel !== 'string' || !res.kernel) errors.push('kernel missing');
  finite(res.repeats, 'repeats');
  finite(res.secondsPerRun, 'secondsPerRun');
  for (const w of WORKLOADS) {
    for (const m of w.metrics) {
      const row = res.rows.find((r) => r.workload === w.id && r.metric === m.metric);
      if (!row) {
        errors.push(`row ${w.id}/${m.metric} missing`);
        continue;
      }
      for (const mode of res.modes) {
        const s = row.modes[mode];
        if (!s) errors.push(`${w.id}/${m.metric}/${mode} missing`);
        else for (const k of ['min', 'median', 'max', 'n'] as const) finite(s[k], `${w.id}/${m.metric}/${mode}.${k}`);
      }
      finite(row.ratios.ebpfVsIptables, `${w.id}/${m.metric} ratio vs iptables`);
      finite(row.ratios.ebpfVsDirect, `${w.id}/${m.metric} ratio vs direct`);
      if (!row.bestEbpf || !['ebpf-capture', 'ebpf-splice', 'ebpf-default'].includes(row.bestEbpf.mode)) errors.push(`${w.id}/${m.metric} best eBPF mode missing`);
      else if (!(row.bestEbpf.defaultBehind >= 0)) errors.push(`${w.id}/${m.metric} default behind best: ${row.bestEbpf.defaultBehind}`);
    }
  }
  for (const mode of res.modes) {
    for (const w of WORKLOADS) if (!res.samples[mode]?.[w.id]?.length) errors.push(`samples ${mode}/${w.id} missing`);
  }
  return errors;
}

privileged('sockmesh bench --quick', () => {
  it('measures every mode and row, writes JSON and SVG, and removes its topology', async () => {
    const out = mkdtempSync(join(tmpdir(), 'sockmesh-bench-test-'));
    try {
      const r = await runCli(['bench', '--quick', '--json', '--out', out], { timeoutMs: 240_000 });
      expect(r.code, r.stderr).toBe(0);
      const res = JSON.parse(r.stdout) as BenchResult;
      expect(res.modes).toEqual(MODES);
      expect(validate(res)).toEqual([]);
      expect(JSON.parse(readFileSync(join(out, 'bench.json'), 'utf8'))).toEqual(res);
      const svg = readFileSync(join(out, 'bench.svg'), 'utf8');
      expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      expect(svg.match(/<rect [^>]*fill="#/g)?.length).toBeGreaterThan(MODES.length * 4);
      expect(r.stderr).toMatch(/\[1\/\d+\] single repeat 1\/1 rr-64 [a-z-]+\n/); // progress lines
      expect(r.stderr).toMatch(/\[1\/\d+\] same-node repeat 1\/1 rr-64 [a-z-]+\n/);
      const table = formatTable(res);
      for (const w of WORKLOADS) expect(table).toContain(w.id);
      // The same-node topology beside it: every mode but kernel mode, every row.
      const same = (res as BenchResult & { sameNode: BenchResult }).sameNode;
      expect(same.topology).toBe('same-node');
      expect(same.modes).toEqual(MODES.filter((m) => m !== 'ebpf-kernel'));
      expect(validate(same)).toEqual([]);
      expect(formatTable(same)).toMatch(/^Same node: /);
      expect(readFileSync(join(out, 'bench-same-node.svg'), 'utf8')).toMatch(/^<svg /);
      expect(leftovers((n) => n.includes('bench'))).toEqual([]);
      const records = existsSync(STATE_DIR) ? readdirSync(STATE_DIR).filter((f) => f.startsWith('bench')) : [];
      expect(records).toEqual([]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('--governance measures the governance sidecar beside plain forwarding in both capture modes, and removes its topology', async () => {
    const r = await runCli(['bench', '--governance', '--quick', '--json'], { timeoutMs: 240_000 });
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as { rows: Array<{ metric: string; modes: Record<string, { n: number; median: number }> }>; targets: Record<string, { addedP50: number; rps: number }> };
    expect(res.rows.map((x) => x.metric)).toEqual(['p50', 'p99', 'rps', 'cpuPerReq']);
    for (const row of res.rows) {
      expect(Object.keys(row.modes)).toEqual(['direct', 'iptables-tcp', 'iptables-governance', 'ebpf-tcp', 'ebpf-governance']);
      for (const s of Object.values(row.modes)) expect(s.n === 1 && Number.isFinite(s.median) && s.median > 0).toBe(true);
    }
    for (const c of ['iptables', 'ebpf']) expect(Number.isFinite(res.targets[c].addedP50) && res.targets[c].rps > 0).toBe(true);
    expect(leftovers((n) => n.includes('bench'))).toEqual([]);
  });

  it('cleans up everything when interrupted with SIGTERM', async () => {
    const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'sockmesh.js'), 'bench', '--repeats', '3', '--seconds', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const exited = new Promise<number>((res) => child.on('close', (code) => res(code ?? 128)));
    await new Promise<void>((res) => child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (/\[2\//.test(stderr)) res();
    }));
    child.kill('SIGTERM');
    expect(await exited).toBe(2);
    expect(stderr).toMatch(/interrupted by SIGTERM; everything this run created was removed/);
    expect(leftovers((n) => n.includes('bench'))).toEqual([]);
  });
}, ['bpftool', 'ip', 'haproxy', 'iptables-restore']);
