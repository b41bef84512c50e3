import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('sidecar')
    .description('run sockmesh\'s pass-through sidecar: forward captured connections to their original destination')
    .option('--address <ip>', 'listen address', '127.0.0.1')
    .option('--outbound-port <port>', 'outbound listener port', '15001')
    .option('--uid <uid>', 'drop to this uid after listening (the sidecar uid sockmesh never captures)')
    .option('--gid <gid>', 'drop to this gid after listening (default: --uid)')
    .option('--log-connections', 'print one JSON line per accepted connection with its original destination')
    .action(async (opts: { address: string; outboundPort: string; uid?: string; gid?: string; logConnections?: boolean }) => {
      const { startOutbound } = await import('../sidecar/outbound.js');
      await startOutbound({
        host: opts.address,
        port: Number(opts.outboundPort),
        onConnection: opts.logConnections ? (ev) => process.stdout.write(`${JSON.stringify({ event: 'connection', ...ev })}\n`) : undefined,
      });
      if (opts.uid !== undefined) {
        process.setgroups?.([]);
        process.setgid!(Number(opts.gid ?? opts.uid));
        process.setuid!(Number(opts.uid));
      }
      process.stdout.write(`${JSON.stringify({ event: 'ready', address: opts.address, port: Number(opts.outboundPort), uid: process.getuid?.() })}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      process.exit(0);
    });
}
