// sockmesh's pass-through sidecar: accept connections captured to the outbound (or inbound) port,
// read where they were going (SO_ORIGINAL_DST, answered by the getsockopt program or by iptables
// NAT) and forward them there. It drops to the sidecar uid/gid before it makes any upstream
// connection, so capture never loops back into it; inbound connections go on to the app from
// 127.0.0.6, Istio's passthrough source, which neither capture mode sends back to the sidecar.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { originalDst } from '../../native/sockopt.js';
import { socketFd } from '../util/fd.js';

export interface OutboundOptions {
  host: string;
  port: number;
  /** Called once per accepted connection with what SO_ORIGINAL_DST said (or the error). */
  onConnection?: (event: ConnectionEvent) => void;
  connectTimeoutMs?: number;
  /** Source address of the upstream connections (inbound: 127.0.0.6). */
  localAddress?: string;
}

export interface ConnectionEvent {
  peer: string;
  /** The port of the listener that accepted it (outbound or inbound). */
  listener?: number;
  originalDst?: { address: string; port: number };
  error?: string;
}


/** Both directions, with half-close carried through (a client's FIN reaches the upstream, and
 * the upstream's reply still reaches the client). */
function splice(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const close = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', close);
  b.on('error', close);
  a.on('close', () => b.end());
  b.on('close', () => a.end());
}

export function startOutbound(opts: OutboundOptions): Promise<Server> {
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    const peer = `${client.remoteAddress}:${client.remotePort}`;
    let dst: { address: string; port: number };
    try {
      dst = originalDst(socketFd(client));
    } catch (e) {
      opts.onConnection?.({ peer, error: (e as Error).message });
      client.destroy();
      return;
    }
    opts.onConnection?.({ peer, originalDst: dst, listener: opts.port });
    const upstream = connect({ host: dst.address, port: dst.port, noDelay: true, allowHalfOpen: true, timeout: opts.connectTimeoutMs ?? 5000,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    upstream.once('timeout', () => upstream.destroy(new Error('upstream connect timeout')));
    upstream.once('connect', () => upstream.setTimeout(0));
    splice(client, upstream);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve(server));
  });
}
