import type { Command } from 'commander';
import { installInterruptHandlers } from '../util/interrupt.js';
import { table } from './output.js';

export function register(program: Command): void {
  program
    .command('demo')
    .description('show a captured connection end to end in a private namespace and cgroup, then clean up')
    .option('--json', 'print the result as JSON (progress goes to stderr)')
    .action(async (opts: { json?: boolean }) => {
      const log = (m: string) => (opts.json ? process.stderr : process.stdout).write(`» ${m}\n`);
      installInterruptHandlers();
      const { runDemo } = await import('../demo.js');
      const res = await runDemo(log);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
        return;
      }
      process.stdout.write(`\ncounters\n${table(Object.entries(res.counters).map(([k, v]) => [`  ${k}`, String(v)]))}\n`);
    });
}
