// The agent's benches run end to end (quick): `bench --kubernetes` (a local API server, pods in the
// kubelet's layout) and `bench --agent` (a watched file), each writing its JSON with every target
// measured, and leaving nothing behind. Their numbers are not asserted: the README quotes full runs.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { STATE_DIR } from '../../src/instance/record.js';
import type { AgentBenchResult } from '../../src/bench/agent.js';
import type { KubeBenchResult } from '../../src/bench/kubernetes.js';
import { runCli } from '../helpers/cli.js';
import { leftovers } from '../helpers/leftovers.js';
import { privileged } from '../helpers/privileged.js';

async function quick<R>(flag: string, file: string): Promise<R> {
  const out = mkdtempSync(join(tmpdir(), 'sockmesh-bench-test-'));
  try {
    const r = await runCli(['bench', flag, '--quick', '--json', '--out', out], { timeoutMs: 240_000 });
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as R;
    expect(JSON.parse(readFileSync(join(out, file), 'utf8'))).toEqual(res);
    expect(r.stderr).toMatch(/cleaning up\n/);
    expect(leftovers((n) => n.includes('bench'))).toEqual([]);
    const records = existsSync(STATE_DIR) ? readdirSync(STATE_DIR).filter((f) => f.startsWith('bench')) : [];
    expect(records).toEqual([]);
    return res;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

privileged('the agent\'s benches (--quick)', () => {
  it('bench --kubernetes: initial sync (first start and restart), RSS, annotation changes reaching the kernel', async () => {
    const res = await quick<KubeBenchResult>('--kubernetes', 'bench-kubernetes.json');
    expect(res.options).toMatchObject({ services: 1000, endpointsPerService: 5 });
    for (const t of [res.firstStart, res.restart]) {
      expect(t.listMs).toBeGreaterThan(0);
      expect(t.applyMs).toBeGreaterThan(0);
      expect(t.totalMs).toBeGreaterThanOrEqual(t.listMs);
    }
    expect(res.changeMs.n).toBe(res.options.changes);
    expect(res.changeMs.p50).toBeGreaterThan(0);
    expect(res.rssMiB).toBeGreaterThan(0);
    expect(res.targets.map((t) => t.target)).toEqual(['< 2000 ms', '< 2000 ms', '< 150 MiB', '< 100 ms']);
    for (const t of res.targets) expect(t.measured).toMatch(/^\d+(\.\d+)? (ms|MiB)$/);
  });

  it('bench --agent: apply, file switches, RSS, idle CPU, /metrics cost and /healthz while scraping', async () => {
    const res = await quick<AgentBenchResult>('--agent', 'bench-agent.json');
    expect(res.switchMs.n).toBe(res.options.switches);
    expect(res.applyMs.n).toBe(3);
    expect(res.targets).toHaveLength(6);
    expect(res.scrapeBytes).toBeGreaterThan(1000);
    expect(res.healthzMs.n).toBeGreaterThan(10);
    for (const t of res.targets) expect(t.measured).toMatch(/^\d+(\.\d+)? (ms|MiB|%)$/);
  });
}, ['bpftool', 'ip']);
