// The soak run, short: it must sample, restart the agent and switch services, and find nothing
// growing or failing. (The real run is `npm run soak`, 10 minutes by default.)
import { expect, it } from 'vitest';
import type { SoakResult } from '../../src/bench/soak.js';
import { runCli } from '../helpers/cli.js';
import { privileged } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

privileged('soak', () => {
  it('runs half a minute of mixed load with agent restarts and switches, and reports no growth', async () => {
    const r = await runCli(['bench', '--soak', '--minutes', '0.5', '--json']);
    const res = JSON.parse(r.stdout) as SoakResult;
    expect(res.problems).toEqual([]);
    expect(r.code).toBe(0);
    expect(res.samples.length).toBeGreaterThanOrEqual(6);
    expect(res.restarts).toBeGreaterThanOrEqual(1);
    expect(res.switches).toBeGreaterThanOrEqual(10);
    expect(res.connections).toBeGreaterThan(100);
    expect(res.samples.at(-1)!.maps.sm_sockhash).toBeGreaterThan(0);
  }, slow(180_000));

  it('refuses --minutes without --soak, and a --minutes that is no duration', async () => {
    expect((await runCli(['bench', '--minutes', '3'])).stderr).toMatch(/--minutes is for --soak/);
    const bad = await runCli(['bench', '--soak', '--minutes', 'ten']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--minutes must be a number of minutes/);
  });
});
