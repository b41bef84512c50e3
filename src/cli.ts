// The sockmesh command line: commander wiring only; each command lives in src/commands/.
import { Command, CommanderError } from 'commander';
import { describe, SockmeshError, UserError } from './errors.js';
import { register as registerAgent } from './commands/agent.js';
import { register as registerBench } from './commands/bench.js';
import { register as registerDemo } from './commands/demo.js';
import { register as registerDown } from './commands/down.js';
import { register as registerExplain } from './commands/explain.js';
import type { Out } from './commands/output.js';
import { register as registerProbe } from './commands/probe.js';
import { register as registerService } from './commands/service.js';
import { register as registerSidecar } from './commands/sidecar.js';
import { register as registerStatus } from './commands/status.js';
import { register as registerUp } from './commands/up.js';
import { register as registerValidate } from './commands/validate.js';
import { register as registerWait } from './commands/wait.js';
import { VERSION } from './version.js';

export function buildProgram(argv: string[] = process.argv): Command {
  const program = new Command('sockmesh')
    .description('eBPF socket-level traffic capture for service-mesh sidecars')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const out = (): Out => {
    // Every command that prints takes --json; find it on the command that is running.
    const json = argv.includes('--json');
    return { json, print: (t) => process.stdout.write(`${t}\n`) };
  };
  for (const reg of [registerUp, registerAgent, registerDown, registerStatus, registerService, registerExplain, registerProbe, registerSidecar, registerValidate, registerWait, registerDemo, registerBench]) reg(program, out);
  return program;
}

/** Runs the CLI; returns the exit code (0 ok, 1 failure, 2 usage or user error). */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram(argv);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const json = argv.includes('--json');
    if (json) {
      const code = err instanceof SockmeshError ? err.code : 'SOCKMESH_E_INTERNAL';
      process.stderr.write(`${JSON.stringify({ error: { code, message: describe(err) } })}\n`);
    } else if (err instanceof UserError || err instanceof SockmeshError) {
      process.stderr.write(`sockmesh: ${describe(err)}\n`);
      if (process.env.SOCKMESH_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    } else {
      process.stderr.write(`sockmesh: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    }
    return err instanceof UserError ? 2 : 1;
  }
}
