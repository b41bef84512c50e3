import { Option, type Command } from 'commander';
import { NodeAgent } from '../agent/daemon.js';
import { checkInstanceName } from '../agent/instance.js';
import { Codes, UserError, describe } from '../errors.js';
import { createLogger } from '../util/log.js';
import type { Out } from './output.js';

interface AgentOpts {
  config: string;
  cgroup: string;
  instance: string;
  listen: string;
  cleanupOnExit?: boolean;
  bpfObject?: string;
  mode: 'auto' | 'ebpf' | 'iptables';
}

export function register(program: Command, _out: () => Out): void {
  program
    .command('agent')
    .description('run the node agent: mesh every pod of the config, follow the file, serve metrics and the control socket')
    .requiredOption('--config <file>', 'YAML config with services and pods (watched: edits apply within ~100 ms)')
    .requiredOption('--cgroup <dir>', 'cgroup2 directory holding every pod\'s cgroup (the programs attach here once)')
    .option('--instance <name>', 'instance name; pins under /sys/fs/bpf/sockmesh-<name>', 'default')
    .option('--listen <host:port>', 'HTTP endpoints /metrics, /healthz, /readyz', '127.0.0.1:15099')
    .addOption(new Option('--mode <mode>', 'ebpf, iptables, or auto: eBPF when the kernel can run it (probed by loading), else iptables mode for every pod').choices(['auto', 'ebpf', 'iptables']).default('auto'))
    .option('--bpf-object <file>', 'the BPF object to load (default: the one sockmesh ships); pinned programs that differ are upgraded in place at start')
    .option('--cleanup-on-exit', 'remove the data path on SIGTERM/SIGINT (default: leave it running)')
    .addHelpText('after', `
Logs JSON lines (pino) on stdout, one line per reconcile with what changed. A bad edit of the file
is rejected whole (every problem logged with its field path) and the last good state stays
applied; a deleted file keeps the last good state too. While the agent runs,
  sockmesh service enable|disable|reset NAME   switch a service (an override, kept across restarts)
  sockmesh status                               ask the agent
talk to it over /run/sockmesh/<instance>.sock (root only). SIGTERM and SIGINT stop the agent and
leave capture running (pins stay); the next agent adopts them, and replaces pinned programs that
differ from its BPF object in place (link update). On its first start it probes the kernel by
loading; when eBPF mode lacks a feature it says which and writes iptables rules in every pod's
namespace instead (--mode ebpf: exit instead).`)
    .action(async (opts: AgentOpts) => {
      for (const [flag, v] of [['--config', opts.config], ['--cgroup', opts.cgroup]] as const) {
        if (!v.trim()) throw new UserError(Codes.USAGE, `${flag} is empty`);
      }
      const log = createLogger();
      const agent = new NodeAgent({
        instance: checkInstanceName(opts.instance), configPath: opts.config, cgroup: opts.cgroup, listen: opts.listen,
        cleanupOnExit: opts.cleanupOnExit ?? false, log, objectPath: opts.bpfObject, mode: opts.mode,
      });
      await agent.start();
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info({ signal }, 'stopping');
          agent.stop().then(resolve, (e) => {
            log.error({ error: describe(e) }, 'stop failed');
            process.exitCode = 1;
            resolve();
          });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
