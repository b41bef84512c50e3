import type { Command } from 'commander';
import { isLive, request } from '../control/client.js';
import { socketPath } from '../control/protocol.js';
import { checkInstanceName } from '../instance/name.js';
import { resetServiceOverride, setServiceRedirect } from '../instance/service-switch.js';
import { emit, type Out } from './output.js';
import type { MeshConfig } from '../config/model.js';
import { readSource } from '../sources/file.js';

/** The agent's config file as it reads now (undefined: not a file, or not readable). */
function configOfFile(configSource: string): MeshConfig | undefined {
  const file = configSource.startsWith('/') ? readSource(configSource) : undefined;
  return file?.kind === 'config' ? file.config : undefined;
}

export function register(program: Command, out: () => Out): void {
  const service = program
    .command('service')
    .description('switch capture of one service on or off (new connections only; live ones keep going)')
    .addHelpText('after', `
With a running agent (sockmesh agent) the switch is an override layered on its config file, kept
across agent restarts until "sockmesh service reset NAME". On an agent's instance while the agent
is stopped, the switch takes effect at once and is kept as its override, so its next start keeps
it. On an instance made by sockmesh up it changes the recorded config directly.`);
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
          `service "${name}" redirect ${redirect ? 'enabled' : 'disabled'}${res.changed ? '' : ' (already so)'}`
          + (res.override ? `\nthe agent of instance "${opts.instance}" is not running: kept as its override, which it applies when it starts (sockmesh service reset ${name} drops it)` : ''));
      });
  }
  service
    .command('reset <name>')
    .description('drop the agent\'s override of service <name>: the config file decides again')
    .option('--instance <name>', 'instance name', 'default')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, opts: { instance: string; json?: boolean }) => {
      const sock = socketPath(checkInstanceName(opts.instance));
      const res = await isLive(sock) ? await request(sock, { op: 'reset', name }) as { hadOverride: boolean; note?: string } : await resetServiceOverride(opts.instance, name, configOfFile);
      emit(out(), { instance: opts.instance, ...res }, () =>
        (res.hadOverride ? `service "${name}": override removed, the config file decides` : `service "${name}" had no override`) + (res.note ? `\n${res.note}` : ''));
    });
}
