import type { Command } from 'commander';
import { isLive, request, socketPath } from '../agent/control.js';
import { checkInstanceName, setServiceRedirect } from '../agent/instance.js';
import { Codes, UserError } from '../errors.js';
import { emit, type Out } from './output.js';

export function register(program: Command, out: () => Out): void {
  const service = program
    .command('service')
    .description('switch capture of one service on or off (new connections only; live ones keep going)')
    .addHelpText('after', `
With a running agent (sockmesh agent) the switch is an override layered on its config file, kept
across agent restarts until "sockmesh service reset NAME". Without an agent it changes the
instance's recorded config directly.`);
  for (const [verb, redirect] of [['enable', true], ['disable', false]] as const) {
    service
      .command(`${verb} <name>`)
      .description(`${verb} redirect of service <name> to the sidecar`)
      .option('--instance <name>', 'instance name', 'default')
      .option('--json', 'print the result as JSON')
      .action(async (name: string, opts: { instance: string; json?: boolean }) => {
        const sock = socketPath(checkInstanceName(opts.instance));
        if (await isLive(sock)) {
          const res = await request(sock, { op: 'service', name, redirect }) as { changed: boolean };
          emit(out(), { instance: opts.instance, ...res }, () =>
            `service "${name}" redirect ${redirect ? 'enabled' : 'disabled'} (agent override)${res.changed ? '' : ' (already so)'}`);
          return;
        }
        const res = await setServiceRedirect(opts.instance, name, redirect);
        emit(out(), { instance: opts.instance, service: name, redirect, ...res }, () =>
          `service "${name}" redirect ${redirect ? 'enabled' : 'disabled'}${res.changed ? '' : ' (already so)'}`);
      });
  }
  service
    .command('reset <name>')
    .description('drop the agent\'s override of service <name>: the config file decides again')
    .option('--instance <name>', 'instance name', 'default')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, opts: { instance: string; json?: boolean }) => {
      const sock = socketPath(checkInstanceName(opts.instance));
      if (!(await isLive(sock))) throw new UserError(Codes.INSTANCE_MISSING, `no agent runs instance "${opts.instance}": overrides exist only with sockmesh agent`);
      const res = await request(sock, { op: 'reset', name }) as { hadOverride: boolean };
      emit(out(), { instance: opts.instance, ...res }, () =>
        res.hadOverride ? `service "${name}": override removed, the config file decides` : `service "${name}" had no override`);
    });
}
