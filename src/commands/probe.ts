import type { Command } from 'commander';
import { requireRoot } from '../util/root.js';
import { emit, table, type Out } from './output.js';

export function register(program: Command, out: () => Out): void {
  program
    .command('probe')
    .description('check that this kernel has every feature sockmesh uses, by loading and attaching for real (LINUX: the release that added each)')
    .option('--json', 'print the checks as JSON')
    .action(async () => {
      requireRoot();
      const { probeKernel } = await import('../bpf/probe.js');
      const checks = await probeKernel();
      const ok = checks.every((c) => c.ok);
      emit(out(), { ok, checks }, () => `${table([['FEATURE', 'LINUX', 'OK', 'DETAIL'], ...checks.map((c) => [c.feature, c.since ?? '', c.ok ? 'yes' : 'NO', c.detail.split('\n')[0]])])}\n${ok ? 'all features present' : 'missing features: sockmesh cannot run in eBPF mode here'}`);
      if (!ok) process.exitCode = 1;
    });
}
