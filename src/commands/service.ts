import type { Command } from 'commander';
import { setServiceRedirect } from '../agent/instance.js';
import { emit, type Out } from './output.js';

export function register(program: Command, out: () => Out): void {
  const service = program
    .command('service')
    .description('switch capture of one service on or off (new connections only; live ones keep going)');
  for (const [verb, redirect] of [['enable', true], ['disable', false]] as const) {
    service
      .command(`${verb} <name>`)
      .description(`${verb} redirect of service <name> to the sidecar`)
      .option('--instance <name>', 'instance name', 'default')
      .option('--json', 'print the result as JSON')
      .action(async (name: string, opts: { instance: string; json?: boolean }) => {
        const res = await setServiceRedirect(opts.instance, name, redirect);
        emit(out(), { instance: opts.instance, service: name, redirect, ...res }, () =>
          `service "${name}" redirect ${redirect ? 'enabled' : 'disabled'}${res.changed ? '' : ' (already so)'}`);
      });
  }
}
