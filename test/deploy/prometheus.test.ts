// deploy/prometheus (issue 26): the rules pass `promtool check rules`, their unit tests pass
// `promtool test rules` (each alert fires on the series that should fire it and stays silent on
// the others), every metric they name is one sockmesh exports, and the PodMonitor validates against
// prometheus-operator's schema. Debian's promtool (package prometheus) is what runs them.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { describe, expect, it } from 'vitest';
import { missingTools, requirementsOrSkip } from '../helpers/privileged.js';

const DIR = 'deploy/prometheus';
const noPromtool = missingTools(['promtool']);

/** Every metric name sockmesh's source registers or writes (prom-client names, the kernel's exposition lines). */
function exported(): Set<string> {
  const names = new Set<string>();
  const walk = (d: string): string[] => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : f.endsWith('.ts') ? [join(d, f)] : []));
  for (const f of walk('src')) for (const m of readFileSync(f, 'utf8').matchAll(/['`](sockmesh_[a-z_]+)['`{]/g)) names.add(m[1]);
  return names;
}

describe('Prometheus rules and the PodMonitor', () => {
  describe.skipIf(requirementsOrSkip(noPromtool))(noPromtool ? `promtool [skipped: ${noPromtool}]` : 'promtool', () => {
    it('checks the rules', () => {
      const out = execFileSync('promtool', ['check', 'rules', 'sockmesh-rules.yaml'], { cwd: DIR, encoding: 'utf8' });
      expect(out).toMatch(/SUCCESS: \d+ rules found/);
    });

    it('passes the rules\' unit tests, and fails them when an alert is broken', () => {
      const ok = spawnSync('promtool', ['test', 'rules', 'sockmesh-rules.test.yaml'], { cwd: DIR, encoding: 'utf8' });
      expect(ok.status, ok.stdout + ok.stderr).toBe(0);
      // The tests can fail: the same tests against rules whose stale alert waits 10 minutes.
      const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
      try {
        const rules = readFileSync(join(DIR, 'sockmesh-rules.yaml'), 'utf8');
        const slower = rules.replace(/(expr: sockmesh_config_source_stale == 1\n\s+for: )1m/, '$110m');
        expect(slower).not.toBe(rules);
        writeFileSync(join(dir, 'sockmesh-rules.yaml'), slower);
        copyFileSync(join(DIR, 'sockmesh-rules.test.yaml'), join(dir, 'sockmesh-rules.test.yaml'));
        const broken = spawnSync('promtool', ['test', 'rules', 'sockmesh-rules.test.yaml'], { cwd: dir, encoding: 'utf8' });
        expect(broken.status).not.toBe(0);
        expect(broken.stdout + broken.stderr).toMatch(/SockmeshConfigSourceStale/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  it('names only metrics sockmesh exports (recording rules aside)', () => {
    const text = readFileSync(join(DIR, 'sockmesh-rules.yaml'), 'utf8');
    const used = new Set([...text.matchAll(/\b(sockmesh_[a-z_]+?)(?:_bucket)?\b/g)].map((m) => m[1]));
    const have = exported();
    expect([...used].filter((n) => !have.has(n)).sort()).toEqual([]);
    expect(used.size).toBeGreaterThanOrEqual(12);
  });

  it('every alert says what it means and what to do', () => {
    const doc = load(readFileSync(join(DIR, 'sockmesh-rules.yaml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string; annotations?: Record<string, string> }> }> };
    const alerts = doc.groups.flatMap((g) => g.rules).filter((r) => r.alert);
    expect(alerts.length).toBeGreaterThanOrEqual(10);
    for (const a of alerts) expect(Object.keys(a.annotations ?? {}).sort(), a.alert).toEqual(['description', 'runbook', 'summary']);
    // Each alert has a unit test.
    const tests = readFileSync(join(DIR, 'sockmesh-rules.test.yaml'), 'utf8');
    for (const a of alerts) expect(tests, a.alert).toContain(`alertname: ${a.alert}`);
  });

  it('the PodMonitor validates against prometheus-operator\'s schema and selects the DaemonSet\'s pods on its metrics port', () => {
    const pm = load(readFileSync(join(DIR, 'podmonitor.yaml'), 'utf8')) as ConstructorParameters<typeof PodMonitor>[0];
    expect(() => new PodMonitor(pm).validate()).not.toThrow();
    const ds = load(readFileSync('deploy/daemonset.yaml', 'utf8').split('\n').filter((l) => !l.startsWith('#')).join('\n')) as { spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: Array<{ ports: Array<{ name: string }> }> } } } };
    for (const [k, v] of Object.entries(pm!.spec.selector.matchLabels ?? {})) expect(ds.spec.template.metadata.labels[k]).toBe(v);
    expect(ds.spec.template.spec.containers[0].ports.map((p) => p.name)).toContain(pm!.spec.podMetricsEndpoints![0].port);
    // A PodMonitor that does not validate is refused (the check can fail).
    expect(() => new PodMonitor({ ...pm!, spec: { ...pm!.spec, podMetricsEndpoints: [{ port: 15099 as unknown as string }] } }).validate()).toThrow();
  });
});
