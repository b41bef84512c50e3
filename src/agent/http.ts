// The agent's HTTP endpoints: /metrics (Prometheus text), /healthz (the process serves),
// /readyz (ready once the first desired state reached the kernel, and while the agent follows its
// source: a stale source (an API server that does not answer, a deleted or invalid file) is 503
// with the reason; the last good state keeps working meanwhile).
import { createServer, type Server } from 'node:http';
import { Codes, UserError } from '../errors.js';

export interface HttpHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Whether the agent is ready, and why not. */
  ready(): { ready: boolean; why?: string };
}

/** host:port, with the host an IPv4 address or localhost. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|localhost|\[::1?\]):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 0 || port > 65535) throw new UserError(Codes.USAGE, `--listen ${JSON.stringify(listen.slice(0, 80))} must be host:port, e.g. 127.0.0.1:15099`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

export class HttpServer {
  readonly name = 'http endpoints';
  private server: Server | undefined;
  /** The port actually bound (useful with port 0). */
  port = 0;

  /** listen: as the operator wrote it (--listen), for the errors. */
  constructor(private readonly listenText: string, private readonly h: HttpHandlers) {
    this.listen = parseListen(listenText);
  }

  private readonly listen: { host: string; port: number };

  /** Where it listens, with the port bound. */
  get address(): string {
    return `${this.listen.host}:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/metrics') {
        this.h.metrics().then(
          ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
          (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${e.message}\n`),
        );
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const r = this.h.ready();
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' }).end(r.ready ? 'ready\n' : `not ready: ${r.why ?? 'no desired state applied yet'}\n`);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /metrics, /healthz, /readyz\n');
      }
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.listen.port, this.listen.host, () => resolve());
    }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE' || e.code === 'EADDRNOTAVAIL' || e.code === 'EACCES') {
        const why = e.code === 'EADDRINUSE' ? 'the address is in use (another agent or program listens there)' : e.code === 'EACCES' ? 'not allowed to listen there' : 'no such address on this host';
        throw new UserError(Codes.USAGE, `--listen ${this.listenText}: ${why}; pick another with --listen HOST:PORT (port 0: any free one)`, { cause: e });
      }
      throw e;
    });
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : this.listen.port;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}
