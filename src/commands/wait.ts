import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { request } from '../control/client.js';
import { socketPath } from '../control/protocol.js';
import { checkInstanceName } from '../instance/name.js';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { emit, type Out } from './output.js';

/** "30s", "500ms", "2m" or plain seconds, in ms. */
function parseTimeout(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v);
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm'] : NaN;
  if (!(ms >= 0 && ms <= 3_600_000)) throw new UserError(Codes.USAGE, `--timeout must be a duration such as 30s, 500ms or 2m (at most 1h), got ${JSON.stringify(v.slice(0, 40))}`);
  return Math.round(ms);
}

export function register(program: Command, out: () => Out): void {
  program
    .command('wait')
    .description('wait until the pod this runs in is meshed (its capture is in the kernel), then exit 0 or run COMMAND')
    .argument('[command...]', 'run this once the pod is meshed (after --), with its exit code as sockmesh\'s')
    .option('--instance <name>', 'the node agent\'s instance', 'default')
    .option('--timeout <duration>', 'give up after this long (exit 1, saying why)', '60s')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Run it as a pod's first step, before its app, as Istio runs istio-init or its CNI plugin's
validation: no connection of the app can then leave before capture is in place. The agent tells
who asks from the socket itself (its cgroup and network namespace, never a name it is given),
looks for the caller's pod at once, and answers when the kernel holds that pod's state. Any user
may ask; the answer is only about the caller's own pod.

  sockmesh wait --timeout 30s -- /app/server --port 8080
  sockmesh wait && exec /app/server   (an init container: exit 0 once meshed)`)
    .action(async (command: string[], opts: { instance: string; timeout: string; json?: boolean }) => {
      const sock = socketPath(checkInstanceName(opts.instance));
      const deadline = Date.now() + parseTimeout(opts.timeout);
      let last = 'no answer yet';
      for (;;) {
        const left = deadline - Date.now();
        try {
          const r = await request(sock, { op: 'wait', timeoutMs: Math.max(0, Math.min(left, 30_000)) }, Math.min(left, 30_000) + 5000) as { meshed: boolean; pod?: string; reason?: string };
          if (r.meshed) {
            if (!command.length) {
              emit(out(), { meshed: true, pod: r.pod, instance: opts.instance }, () => `meshed: pod ${r.pod} (instance ${opts.instance})`);
              return;
            }
            process.exitCode = await run(command);
            return;
          }
          last = r.reason ?? 'not meshed';
        } catch (e) {
          // The agent is not there (yet), or starting: ask again until the time is up.
          if (!(e instanceof SockmeshError) || (e.code !== Codes.INSTANCE_MISSING && e.code !== Codes.INSTANCE_BUSY)) throw e;
          last = e.message;
          await new Promise((r) => setTimeout(r, 250));
        }
        if (Date.now() >= deadline) throw new SockmeshError(Codes.INSTANCE_MISSING, `not meshed after ${opts.timeout}: ${last}`);
      }
    });
}

/** Runs the command with this process's stdio, passing signals on; resolves to its exit code. */
function run(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit' });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
    for (const s of signals) process.on(s, forward);
    child.once('error', (e) => reject(new UserError(Codes.USAGE, `cannot run ${argv[0]}: ${e.message}`)));
    child.once('close', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      resolve(code ?? (signal ? 128 + (({ SIGTERM: 15, SIGINT: 2, SIGHUP: 1, SIGKILL: 9 } as Record<string, number>)[signal] ?? 1) : 1));
    });
  });
}
