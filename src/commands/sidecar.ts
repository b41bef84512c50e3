import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('sidecar')
    .description('run a sidecar in this pod: sockmesh\'s pass-through one (captured connections to their original destination, inbound ones from 127.0.0.6), or with --config the governance sidecar (HAProxy enforcing each service\'s policy)')
    .option('--address <ip>', 'outbound listen address', '127.0.0.1')
    .option('--outbound-port <port>', 'outbound listener port', '15001')
    .option('--inbound-port <port>', 'inbound listener port (on every address); 0: no inbound listener', '15006')
    .option('--uid <uid>', 'drop to this uid after listening (the sidecar uid sockmesh never captures)')
    .option('--gid <gid>', 'drop to this gid after listening (default: --uid)')
    .option('--log-connections', 'print one JSON line per accepted connection with its original destination')
    .option('--config <file>', 'run the governance sidecar instead: HAProxy with the policy of this config file\'s services (reloaded seamlessly when the file changes; a bad version is refused and the last good one keeps serving)')
    .option('--run-dir <dir>', 'with --config: where the rendered haproxy.cfg and its runtime socket live (default: /run/sockmesh/sidecar-<pid>)')
    .option('--instance <name>', 'with --config: follow the policy versions of this instance\'s agent (the file\'s policy until the agent answers; while it is away the last good version keeps serving)')
    .option('--id <name>', 'with --instance: this sidecar\'s name in the agent\'s status (default: pid-<pid>)')
    .option('--access-log <file>', 'with --config: append the JSON access records to this file instead of standard output')
    .option('--metrics-listen <host:port>', 'with --config: the sidecar\'s Prometheus /metrics (requests, errors, duration histograms per service and endpoint)', '127.0.0.1:15020')
    .action(async (opts: { address: string; outboundPort: string; inboundPort: string; uid?: string; gid?: string; logConnections?: boolean; config?: string; runDir?: string; metricsListen: string; accessLog?: string; instance?: string; id?: string }) => {
      if (opts.config !== undefined) {
        const { GovernanceSidecar } = await import('../sidecar/governance.js');
        const { STATE_DIR } = await import('../instance/record.js');
        const emit = (ev: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(ev)}\n`);
        const { createWriteStream } = await import('node:fs');
        const file = opts.accessLog === undefined ? undefined : createWriteStream(opts.accessLog, { flags: 'a' });
        const accessLog = file ? (lines: string) => { file.write(lines); } : (lines: string) => { process.stdout.write(lines); };
        const { socketPath } = await import('../control/protocol.js');
        const { checkInstanceName } = await import('../instance/name.js');
        const agentSocket = opts.instance === undefined ? undefined : socketPath(checkInstanceName(opts.instance));
        const sidecar = new GovernanceSidecar({ configPath: opts.config, runDir: opts.runDir ?? `${STATE_DIR}/sidecar-${process.pid}`, metricsListen: opts.metricsListen, emit, accessLog,
          agentSocket, sidecarId: opts.id ?? `pid-${process.pid}`,
          // HAProxy that keeps dying: exit non-zero, so the pod's restart policy takes over.
          onFatal: () => { void sidecar.stop().finally(() => process.exit(1)); } });
        const stop = async () => {
          await sidecar.stop();
          process.exit(0);
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
        try {
          await sidecar.start();
        } catch (err) {
          await sidecar.stop();
          throw err;
        }
        return;
      }
      const { startOutbound } = await import('../sidecar/outbound.js');
      const onConnection = opts.logConnections ? (ev: object) => process.stdout.write(`${JSON.stringify({ event: 'connection', ...ev })}\n`) : undefined;
      await startOutbound({ host: opts.address, port: Number(opts.outboundPort), onConnection });
      if (Number(opts.inboundPort)) await startOutbound({ host: '0.0.0.0', port: Number(opts.inboundPort), onConnection, localAddress: '127.0.0.6' });
      if (opts.uid !== undefined) {
        process.setgroups?.([]);
        process.setgid!(Number(opts.gid ?? opts.uid));
        process.setuid!(Number(opts.uid));
      }
      process.stdout.write(`${JSON.stringify({ event: 'ready', address: opts.address, port: Number(opts.outboundPort), inboundPort: Number(opts.inboundPort), uid: process.getuid?.() })}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      process.exit(0);
    });
}
