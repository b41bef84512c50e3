import type { Command } from 'commander';
import { down } from '../agent/instance.js';
import { emit, type Out } from './output.js';

export function register(program: Command, out: () => Out): void {
  program
    .command('down')
    .description('detach every program of an instance and remove its pins; harmless when it is not up')
    .option('--instance <name>', 'instance name', 'default')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { instance: string; json?: boolean }) => {
      const res = await down(opts.instance);
      emit(out(), res, () => (res.removed ? `sockmesh instance "${res.instance}" removed` : `sockmesh instance "${res.instance}" was not up`));
    });
}
