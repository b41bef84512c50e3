import { Option, type Command } from 'commander';
import { NodeAgent } from '../agent/daemon.js';
import type { KubernetesOptions } from '../agent/options.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Mounts } from '../bpf/cgroup.js';
import { checkInstanceName } from '../instance/name.js';
import { Codes, UserError, describe } from '../errors.js';
import { createLogger } from '../util/log.js';
import type { Out } from './output.js';

interface AgentOpts {
  config?: string;
  cgroup?: string;
  kubernetes?: boolean;
  node?: string;
  kubeconfig?: string;
  proc: string;
  instance: string;
  listen: string;
  cleanupOnExit?: boolean;
  bpfObject?: string;
  mode: 'auto' | 'ebpf' | 'iptables';
}

export function register(program: Command, _out: () => Out): void {
  program
    .command('agent')
    .description('run the node agent: mesh every pod of the config file or of the cluster, follow it, serve metrics and the control socket')
    .option('--config <file>', 'YAML config with services and pods (watched: edits apply within ~100 ms); with --kubernetes, node-wide settings only')
    .option('--cgroup <dir>', 'cgroup2 directory holding every pod\'s cgroup (the programs attach here once); with --kubernetes the one holding the kubelet\'s kubepods/ or kubepods.slice/ (default: kubepods.slice or kubepods below the cgroup2 mount, whichever the kubelet made)')
    .option('--kubernetes', 'follow the cluster: this node\'s Pods, Services and EndpointSlices (in-cluster credentials, or --kubeconfig / KUBECONFIG)')
    .option('--node <name>', 'with --kubernetes: this node\'s name (default: the NODE_NAME environment variable; never the hostname)')
    .option('--kubeconfig <file>', 'with --kubernetes: credentials for running it outside the cluster')
    .option('--proc <dir>', 'with --kubernetes: the host\'s /proc, where each pod\'s network namespace is found through its processes', '/proc')
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
namespace instead (--mode ebpf: exit instead).

In a cluster (--kubernetes) the agent meshes the Pods of its node that carry an Istio sidecar
(an istio-proxy container or the sidecar.istio.io/status annotation) or the label
sockmesh.io/mesh: enabled (sidecar.istio.io/inject: "false" opts out); the Services' cluster
addresses are captured, named name.namespace. Annotations: on Services sockmesh.io/redirect:
"false" (the per-service switch) and sockmesh.io/splice: auto|always|never; on Pods Istio's
traffic.sidecar.istio.io/{include,exclude}{Inbound,Outbound}Ports and
{include,exclude}OutboundIPRanges. A malformed annotation gets a Warning Event on its object,
which keeps its last good state. See deploy/ for the DaemonSet.`)
    .action(async (opts: AgentOpts) => {
      for (const [flag, v] of [['--config', opts.config], ['--cgroup', opts.cgroup], ['--node', opts.node], ['--kubeconfig', opts.kubeconfig]] as const) {
        if (v !== undefined && !v.trim()) throw new UserError(Codes.USAGE, `${flag} is empty`);
      }
      let kubernetes: KubernetesOptions | undefined;
      let cgroup = opts.cgroup;
      if (opts.kubernetes) {
        const node = opts.node ?? process.env.NODE_NAME;
        if (!node?.trim()) throw new UserError(Codes.USAGE, '--kubernetes needs the node name: --node NAME, or NODE_NAME (the DaemonSet sets it from spec.nodeName)');
        kubernetes = { node, kubeconfig: opts.kubeconfig, procRoot: opts.proc };
        cgroup ??= kubepods();
      } else {
        for (const flag of ['node', 'kubeconfig'] as const) {
          if (opts[flag] !== undefined) throw new UserError(Codes.USAGE, `--${flag} goes with --kubernetes`);
        }
        if (opts.config === undefined) throw new UserError(Codes.USAGE, 'the agent needs --config FILE, or --kubernetes to follow a cluster');
        if (cgroup === undefined) throw new UserError(Codes.USAGE, '--cgroup DIR is required with --config (the cgroup2 directory holding every pod\'s cgroup)');
      }
      const log = createLogger();
      const agent = new NodeAgent({
        instance: checkInstanceName(opts.instance), configPath: opts.config, kubernetes, cgroup, listen: opts.listen,
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

/**
 * The kubelet's pod hierarchy below a cgroup2 mount: kubepods.slice (systemd driver) or kubepods
 * (cgroupfs). Never the cgroup2 root itself: programs there would capture the node's own processes.
 */
function kubepods(): string {
  const mounts = cgroup2Mounts();
  if (!mounts.length) throw new UserError(Codes.CGROUP, 'no cgroup2 filesystem is mounted here; pass --cgroup');
  for (const m of mounts) {
    for (const d of ['kubepods.slice', 'kubepods']) if (existsSync(join(m, d, 'cgroup.procs'))) return join(m, d);
  }
  throw new UserError(Codes.CGROUP, `no kubepods.slice or kubepods cgroup below ${mounts.join(', ')}; pass --cgroup with the directory holding the kubelet's pods`);
}
