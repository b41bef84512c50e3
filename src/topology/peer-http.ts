// The HTTP peers of src/topology/peer.ts: a server whose status and delay stdin sets, a keep-alive load client.
import { Agent, createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createInterface } from 'node:readline';
import { out } from './peer-io.js';

/**
 * An HTTP endpoint: answers every request with JSON {server, path, traceparent, headers} and the
 * status it is told (stdin lines "status N", "delay MS" change it while it runs).
 */
export function httpServe(host: string, port: number, name: string): void {
  let status = 200;
  let delay = 0;
  createInterface({ input: process.stdin }).on('line', (l) => {
    const [k, v] = l.trim().split(/\s+/);
    if (k === 'status') status = Number(v);
    if (k === 'delay') delay = Number(v);
    out({ event: 'set', status, delay });
  });
  const server = createHttpServer((req, res) => {
    const reply = () => {
      const body = JSON.stringify({ server: name, path: req.url, traceparent: req.headers.traceparent ?? null, headers: req.headers });
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-served-by': name });
      res.end(body);
    };
    if (delay) setTimeout(reply, delay);
    else reply();
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, host, () => out({ event: 'ready', host, port }));
  process.once('SIGTERM', () => process.exit(0));
}

/**
 * HTTP/1.1 keep-alive requests one after another (`concurrency` at a time) until `count` are done
 * (0: until stdin closes); one JSON line per response (status, server, traceparent seen by the
 * server), then a summary with the counts by status and server and the failures (errors, 5xx).
 */
export function httpLoad(host: string, port: number, count: number, concurrency: number, header: string | undefined): void {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const statuses: Record<string, number> = {};
  const servers: Record<string, number> = {};
  let started = 0;
  let finished = 0;
  let failures = 0;
  let stop = false;
  if (!count) createInterface({ input: process.stdin }).on('close', () => { stop = true; });
  const headers: Record<string, string> = {};
  if (header) headers[header.slice(0, header.indexOf(':'))] = header.slice(header.indexOf(':') + 1).trim();
  const done = () => {
    out({ event: 'done', requests: finished, failures, statuses, servers });
    agent.destroy();
    process.exit(0);
  };
  const next = (): void => {
    if (stop || (count && started >= count)) {
      if (finished === started) done();
      return;
    }
    started += 1;
    const req = httpRequest({ host, port, path: `/r${started}`, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const code = res.statusCode ?? 0;
        let body: { server?: string; traceparent?: string | null } = {};
        try { body = JSON.parse(Buffer.concat(chunks).toString()); } catch { /* an error page from the sidecar */ }
        statuses[code] = (statuses[code] ?? 0) + 1;
        if (body.server) servers[body.server] = (servers[body.server] ?? 0) + 1;
        if (code >= 500) failures += 1;
        finished += 1;
        out({ event: 'response', status: code, server: body.server ?? null, traceparent: body.traceparent ?? null });
        next();
      });
    });
    req.on('error', (e) => {
      statuses.error = (statuses.error ?? 0) + 1;
      failures += 1;
      finished += 1;
      out({ event: 'response', status: 0, error: e.message });
      next();
    });
    req.end();
  };
  for (let i = 0; i < concurrency; i++) next();
}
