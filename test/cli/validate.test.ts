// `sockmesh validate`: configs checked as up and the agent check them, without root or the kernel;
// every problem with its field path, exit 2 when any file is invalid.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

describe('sockmesh validate', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const good = file('good.yaml', 'services:\n  - { name: reviews, addresses: [10.96.0.20], ports: [9080] }\n');
  const bad = file('bad.yaml', 'services:\n  - { name: reviews, ports: [70000], splice: sometimes }\n  - name: ratings\n    ports: [80]\n    policy: { retries: { attempts: 2, retryOn: connect-failure,5xx } }\n');

  it('says valid, with what the file holds, and exits 0', async () => {
    const r = await runCli(['validate', good]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${good}: valid (1 service, 0 pods)\n`);
  });

  it('lists every problem with its field path and exits 2; one bad file among good ones fails the run', async () => {
    const r = await runCli(['validate', good, bad]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`${bad}: 3 problems`);
    expect(r.stdout).toContain('  services[0].ports[0]: must be between 1 and 65535, got 70000');
    expect(r.stdout).toContain('  services[0].splice: must be one of auto, always, never, got string "sometimes"');
    expect(r.stdout).toMatch(/services\[1\]\.policy\.retries\.5xx: unknown key/);
  });

  it('--json for scripts; - reads standard input; --mode checks what that capture mode cannot express', async () => {
    const j = await runCli(['validate', '--json', bad]);
    expect(JSON.parse(j.stdout)).toMatchObject({ valid: false, files: [{ file: bad, valid: false, problems: expect.arrayContaining([{ path: 'services[0].ports[0]', message: 'must be between 1 and 65535, got 70000' }]) }] });
    const stdin = await runCli(['validate', '-'], { input: 'services: []\n' });
    expect(stdin).toMatchObject({ code: 0, stdout: '-: valid (0 services, 0 pods)\n' });
    const pods = file('pods.yaml', 'services: []\npods:\n  - { name: a, cgroup: a, netns: a }\n');
    const m = await runCli(['validate', '--mode', 'iptables', pods]);
    expect(m.code).toBe(2);
    expect(m.stdout).toMatch(/pods: iptables mode meshes one pod/);
  });
});
