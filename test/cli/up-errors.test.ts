// Failures of `up` change nothing: invalid configs, forbidden cgroups and objects that do not load.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { up } from '../../src/instance/lifecycle.js';
import { readRecord, recordPath } from '../../src/instance/record.js';
import { cgroup2Mount } from '../../src/bpf/cgroup.js';
import { featureFromLoadLog } from '../../src/bpf/load.js';
import { PROGRAMS } from '../../src/bpf/programs.js';
import { loadConfig } from '../../src/config/load.js';
import { NotSupportedError, SockmeshError } from '../../src/errors.js';
import { Topology } from '../../src/topology/topology.js';
import { runCli } from '../helpers/cli.js';
import { privileged, uniqueName } from '../helpers/privileged.js';

privileged('up fails cleanly', () => {
  const instance = uniqueName('u');
  let topo: Topology;
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));

  beforeAll(async () => {
    topo = await Topology.create(instance);
  });
  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await topo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const nothingApplied = () => {
    expect(existsSync(`/sys/fs/bpf/sockmesh-${instance}`)).toBe(false);
    expect(execFileSync('bpftool', ['cgroup', 'show', topo.cgroup], { encoding: 'utf8' }).trim()).toBe('');
    expect(readRecord(instance)).toBeUndefined();
  };

  const cases: Array<[string, string, RegExp]> = [
    ['a wrong type', 'services: []\nsidecar: { uid: "x" }', /sidecar\.uid: must be an integer/],
    ['a port out of range', 'services: [{ name: a, ports: [70000] }]', /services\[0\]\.ports\[0\]: must be between 1 and 65535/],
    ['duplicate names', 'services: [{ name: a, ports: [1] }, { name: a, ports: [2] }]', /services\[1\]\.name: duplicate service name "a"/],
    ['an unknown key', 'services: [{ name: a, ports: [1], colour: red }]', /services\[0\]\.colour: unknown key/],
  ];
  for (const [what, yaml, message] of cases) {
    it(`rejects a config with ${what}, naming the field, and loads nothing`, async () => {
      const file = join(dir, 'bad.yaml');
      writeFileSync(file, yaml);
      const r = await runCli(['up', '--cgroup', topo.cgroup, '--config', file, '--instance', instance]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace for a user mistake
      expect(r.stdout).toBe('');
      nothingApplied();
    });
  }

  it('reports JSON errors with a stable code under --json', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'exclude: { outboundCIDRs: [nonsense] }');
    const r = await runCli(['up', '--cgroup', topo.cgroup, '--config', file, '--instance', instance, '--json']);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stderr).error.code).toBe('SOCKMESH_E_CONFIG_INVALID');
    nothingApplied();
  });

  it('refuses the cgroup2 root and paths that are not cgroups', async () => {
    const root = await runCli(['up', '--cgroup', cgroup2Mount()!, '--instance', instance]);
    expect(root.code).toBe(2);
    expect(root.stderr).toMatch(/refusing to attach to the cgroup2 root/);
    const notCg = await runCli(['up', '--cgroup', dir, '--instance', instance]);
    expect(notCg.code).toBe(2);
    expect(notCg.stderr).toMatch(/is not a cgroup2 directory/);
    nothingApplied();
  });

  it('removes everything when the object does not load', async () => {
    const bogus = join(dir, 'bogus.o');
    writeFileSync(bogus, 'not an ELF file');
    await expect(up({ instance, cgroup: topo.cgroup, config: loadConfig(undefined), configSource: 't', objectPath: bogus }))
      .rejects.toBeInstanceOf(SockmeshError);
    nothingApplied();
  });

  it('down still detaches everything when the instance record is gone', async () => {
    const r = await runCli(['up', '--cgroup', topo.cgroup, '--instance', instance]);
    expect(r.code).toBe(0);
    expect(execFileSync('bpftool', ['cgroup', 'show', topo.cgroup], { encoding: 'utf8' })).toMatch(/sm_connect4/);
    rmSync(recordPath(instance));
    const d = await runCli(['down', '--instance', instance, '--json']);
    expect(JSON.parse(d.stdout)).toMatchObject({ instance, removed: true, pinsRemoved: true });
    expect(JSON.parse(d.stdout).detached).toHaveLength(PROGRAMS.filter((p) => p.target === 'cgroup').length);
    nothingApplied();
  });

  it('rejects a bad instance name before doing anything', async () => {
    const r = await runCli(['up', '--cgroup', topo.cgroup, '--instance', '../etc']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid instance name/);
  });
});

it('names the kernel feature behind a load failure', () => {
  expect(featureFromLoadLog("libbpf: prog 'sm_msg': BPF program load failed: Invalid argument\n"))
    .toEqual({ feature: 'sk_msg programs with bpf_msg_redirect_hash (BPF_PROG_TYPE_SK_MSG)', detail: 'program sm_msg did not load: Invalid argument' });
  expect(featureFromLoadLog('0: (85) call bpf_msg_redirect_hash#71\nunknown func bpf_msg_redirect_hash#71\n')?.feature)
    .toBe('BPF helper bpf_msg_redirect_hash');
  expect(featureFromLoadLog("libbpf: map 'sm_sockhash': failed to create: Invalid argument(-22)")?.feature).toBe('BPF map sm_sockhash');
  expect(featureFromLoadLog('something else')).toBeUndefined();
  expect(new NotSupportedError('BPF map x', 'y').message).toBe('kernel feature not supported: BPF map x (y)');
});
