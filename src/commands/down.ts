import type { Command } from 'commander';
import { down } from '../instance/lifecycle.js';
import { emit, type Out } from './output.js';

export function register(program: Command, out: () => Out): void {
  program
    .command('down')
    .description('detach every program of an instance and remove its pins and rules; harmless when it is not up')
    .addHelpText('after', `
Works from what the kernel shows: programs are found on the instance's cgroup by name, so down
also cleans up after pins removed by hand or a damaged record. Exits 1 if anything stays attached.`)
    .option('--instance <name>', 'instance name', 'default')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { instance: string; json?: boolean }) => {
      const res = await down(opts.instance);
      emit(out(), res, () => [
        res.removed ? `sockmesh instance "${res.instance}" removed` : `sockmesh instance "${res.instance}" was not up`,
        ...res.detached.map((d) => `  detached ${d}`),
        ...(res.pinsRemoved ? ['  removed its pins'] : []),
        ...(res.rules === 'removed' ? ['  removed its iptables rules'] : []),
        ...res.notes.map((n) => `  note: ${n}`),
      ].join('\n'));
    });
}
