// The CLI as a user meets it: help, the probe, the demo, errors without an instance.
import { expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { leftovers } from '../helpers/leftovers.js';
import { privileged } from '../helpers/privileged.js';

it('explains every command in --help', async () => {
  const r = await runCli(['--help']);
  expect(r.code).toBe(0);
  for (const cmd of ['up', 'down', 'status', 'service', 'probe', 'sidecar', 'demo']) expect(r.stdout).toMatch(new RegExp(`\\n  ${cmd} `));
  const upHelp = await runCli(['up', '--help']);
  expect(upHelp.stdout).toMatch(/--cgroup <dir>/);
  expect(upHelp.stdout).toMatch(/invalid config changes nothing/);
});

it('reports usage errors with exit code 2', async () => {
  const bad = await runCli(['up', '--bogus']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/unknown option '--bogus'/);
  const mode = await runCli(['up', '--mode', 'nft']);
  expect(mode.code).toBe(2);
  expect(mode.stderr).toMatch(/Allowed choices are ebpf, iptables/);
});

privileged('commands that need the kernel', () => {
  it('probe finds every feature on this kernel and leaves nothing behind', async () => {
    const r = await runCli(['probe', '--json']);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ feature: string; ok: boolean }> };
    expect(res.ok).toBe(true);
    expect(res.checks.map((c) => c.feature)).toEqual(expect.arrayContaining(['bpffs', 'BPF_MAP_TYPE_SOCKHASH', 'load sockmesh.bpf.o', 'attach']));
    expect(leftovers((n) => n.includes('probe-'))).toEqual([]);
  });

  it('demo shows a captured connection with its original destination, then cleans up', async () => {
    const r = await runCli(['demo', '--json'], { timeoutMs: 90_000 });
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.sidecarSaw.originalDst).toEqual({ address: '10.96.0.20', port: 9080 });
    expect(res.reply).toMatchObject({ server: 'reviews', local: '10.96.0.20:9080' });
    expect(res.counters.connectRewrites).toBe(1);
    expect(res.counters.origDstHits).toBe(1);
    expect(r.stderr).toMatch(/removed the instance, the namespace and the cgroup/);
    expect(leftovers((n) => n.includes('demo-'))).toEqual([]);
  });

  it('eBPF mode without --cgroup is a user error', async () => {
    const r = await runCli(['up', '--instance', 'no-such-instance']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/eBPF mode needs --cgroup/);
  });

  it('status of an instance that is not up is a user error', async () => {
    const r = await runCli(['status', '--instance', 'no-such-instance']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('sockmesh: no sockmesh instance "no-such-instance" is up (sockmesh up --instance no-such-instance …)\n');
  });
});
