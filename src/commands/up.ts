import type { Command } from 'commander';
import { up } from '../agent/instance.js';
import { loadConfig } from '../config/load.js';
import { emit, type Out } from './output.js';

export function register(program: Command, out: () => Out): void {
  program
    .command('up')
    .description('load sockmesh into a cgroup2 directory, or update a running instance in place')
    .requiredOption('--cgroup <dir>', 'cgroup2 directory whose processes are meshed (never the cgroup2 root)')
    .option('--config <file>', 'YAML config (default: the embedded default config)')
    .option('--instance <name>', 'instance name; pins live under /sys/fs/bpf/sockmesh-<name>', 'default')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Validates the config first: an invalid config changes nothing. Running up twice is harmless;
running it with a new config rewrites only the map entries that differ.`)
    .action(async (opts: { cgroup: string; config?: string; instance: string; json?: boolean }) => {
      const config = loadConfig(opts.config);
      const res = await up({ instance: opts.instance, cgroup: opts.cgroup, config, configSource: opts.config ?? '(embedded default)' });
      emit(out(), res, () => {
        const verb = res.created ? 'loaded and attached' : 'updated';
        const changed = Object.entries(res.changes).map(([m, c]) => `${m} +${c.put}/-${c.del}`).join(', ') || 'no map changes';
        return `sockmesh instance "${res.instance}" ${verb} (${changed})`;
      });
    });
}
