// Test and demo peers: a server and clients that run inside a topology's cgroup and namespace.
//   serve --host H --port P --name N --mode whoami|echo|origdst   prints {"event":"ready"} when listening
//     (origdst: a stand-in sidecar listener that answers with the connection's SO_ORIGINAL_DST)
//   ask --host H --port P [--local-port L]                 one request per stdin line, one JSON reply line each
//     (--local-port binds 127.0.0.1:L first, so two pods' connections can share one 4-tuple)
//   stream --host H --port P --bytes N [--chunk C] [--nodelay after|never] [--toggle-nodelay K] [--interval-ms M]
//                                                          sends N bytes, reads N echoed back, prints digests
//                                                          (--interval-ms: one chunk every M ms, {"event":"progress"} at the first echo)
//   probe --host H --port P                                per stdin line captured|direct: connect until so, print ms
//   repeat --host H --port P [--count N]                   new connections one after another until stdin closes, then a summary
//   udp-serve --host H --port P --name N                   UDP: answers each datagram with "N <datagram>"
//   udp-ask --host H --port P [--sockets S --each E]       UDP through a service: who answered, from which source
//   http-serve --host H --port P --name N                  HTTP: JSON {server, path, traceparent}; stdin "status N" / "delay MS"
//   http-load --host H --port P [--count N] [--concurrency C] [--header K:V]   keep-alive requests, one line each, then counts
import { createHash } from 'node:crypto';
import { Agent, createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createSocket, type Socket as Socket4 } from 'node:dgram';
import { connect, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { originalDst } from '../../native/sockopt.js';
import { socketFd } from '../util/fd.js';

function out(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v)}\n`);
}

function serve(host: string, port: number, name: string, mode: string): void {
  const server = createServer({ noDelay: true }, (sock) => {
    sock.on('error', () => sock.destroy());
    if (mode === 'echo') {
      sock.pipe(sock);
      return;
    }
    let origDst: unknown;
    if (mode === 'origdst') {
      try {
        origDst = originalDst(socketFd(sock));
      } catch (e) {
        origDst = { error: (e as Error).message };
      }
    }
    const rl = createInterface({ input: sock });
    rl.on('error', () => undefined); // a reset connection: readline re-emits it; the socket's handler closes it
    rl.on('line', (line) => {
      sock.write(`${JSON.stringify({ server: name, local: `${sock.localAddress}:${sock.localPort}`, peer: `${sock.remoteAddress}:${sock.remotePort}`, line, origDst })}\n`);
    });
  });
  server.listen(port, host, () => out({ event: 'ready', host, port }));
  process.once('SIGTERM', () => process.exit(0));
}

function ask(host: string, port: number, localPort?: number): void {
  const sock = connect({ host, port, noDelay: true, ...(localPort ? { localAddress: '127.0.0.1', localPort } : {}) });
  const replies = createInterface({ input: sock });
  replies.on('error', () => undefined); // readline re-emits the socket's error: reported by the socket's handler
  const pending: string[] = [];
  sock.on('connect', () => out({ event: 'connected', local: `${sock.localAddress}:${sock.localPort}`, remote: `${sock.remoteAddress}:${sock.remotePort}` }));
  sock.on('error', (e) => {
    out({ event: 'error', message: e.message });
    process.exit(1);
  });
  replies.on('line', (line) => {
    pending.shift();
    out({ event: 'reply', reply: JSON.parse(line) });
  });
  const input = createInterface({ input: process.stdin });
  input.on('line', (line) => {
    pending.push(line);
    sock.write(`${line}\n`);
  });
  input.on('close', () => sock.end());
  sock.on('close', () => process.exit(0));
}

/**
 * Waits for a capture decision to change, through the real capture path: for each stdin line
 * `captured` or `direct`, connects to host:port over and over until the outcome is that (captured:
 * the connect reaches the pod's sidecar; direct: the connect fails, the address being unreachable
 * from the pod) and prints {"event":"changed","ms":…} with the time since the line arrived.
 */
function probe(host: string, port: number): void {
  const input = createInterface({ input: process.stdin });
  input.on('line', (want) => {
    const t0 = process.hrtime.bigint();
    const tries = { n: 0 };
    const once = () => {
      tries.n += 1;
      const sock = connect({ host, port });
      const done = (outcome: string) => {
        sock.destroy();
        if (outcome === want) out({ event: 'changed', want, ms: Number(process.hrtime.bigint() - t0) / 1e6, tries: tries.n });
        else if (Number(process.hrtime.bigint() - t0) > 10e9) out({ event: 'timeout', want, tries: tries.n });
        else setTimeout(once, 1); // at most ~1,000 tries a second: no port exhaustion, 1 ms resolution
      };
      sock.once('connect', () => done('captured'));
      // Only "unreachable" means the connection went direct; anything else is tried again.
      sock.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ENETUNREACH' || e.code === 'EHOSTUNREACH' ? 'direct' : 'other'));
    };
    once();
  });
  out({ event: 'ready' });
}

/**
 * New connections one after another until stdin closes (or `count` were made): each sends one line
 * and reads the reply; then prints {"event":"summary","total":N,"outcomes":{"<server> <origDst>":
 * count,…},"peers":{"<getpeername>":count,…},"errors":[…]}. Shows that every connection made while
 * something changes (an upgrade) was captured, and where connections went.
 */
function repeat(host: string, port: number, count: number): void {
  const peers: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  const errors: string[] = [];
  let total = 0;
  let stop = false;
  createInterface({ input: process.stdin }).on('close', () => { stop = true; });
  const once = () => {
    if (stop || (count > 0 && total >= count)) {
      out({ event: 'summary', total, outcomes, peers, errors });
      process.exit(0);
    }
    total += 1;
    const sock = connect({ host, port, noDelay: true });
    const lines = createInterface({ input: sock });
    let done = false;
    const finish = (what: string | undefined, error?: string) => {
      if (done) return;
      done = true;
      sock.destroy();
      if (what) outcomes[what] = (outcomes[what] ?? 0) + 1;
      if (error) errors.push(error);
      setImmediate(once);
    };
    lines.once('line', (l) => {
      const r = JSON.parse(l) as { server?: string; origDst?: { address?: string; port?: number } };
      finish(`${r.server} ${r.origDst?.address}:${r.origDst?.port}`);
    });
    sock.once('connect', () => {
      const peer = `${sock.remoteAddress}:${sock.remotePort}`;
      peers[peer] = (peers[peer] ?? 0) + 1;
      sock.write('x\n');
    });
    sock.once('error', (e) => finish(undefined, e.message));
  };
  out({ event: 'ready' });
  once();
}

/** A UDP server answering each datagram with "<name> <datagram>" to its sender. */
function udpServe(host: string, port: number, name: string): void {
  const s = createSocket('udp4');
  s.on('message', (msg, from) => s.send(Buffer.concat([Buffer.from(`${name} `), msg]), from.port, from.address));
  s.bind(port, host, () => out({ event: 'ready', host, port }));
  process.once('SIGTERM', () => process.exit(0));
}

/**
 * UDP through a service: `sockets` unconnected sockets each send `each` datagrams with sendto and
 * read the replies (which server answered, and the source address recvfrom showed), then one
 * connected socket sends one and reads it back with its getpeername(). Prints
 * {"event":"done","unconnected":[{"names":[…],"src":"a:p"}…],"peer":"a:p","connected":"<name>"}.
 */
async function udpAsk(host: string, port: number, sockets: number, each: number): Promise<void> {
  const exchange = (s: Socket4, send: () => void) => new Promise<{ name: string; src: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no UDP reply in 5 s')), 5000);
    s.once('message', (msg, from) => {
      clearTimeout(timer);
      resolve({ name: msg.toString().split(' ')[0], src: `${from.address}:${from.port}` });
    });
    send();
  });
  const unconnected: Array<{ names: string[]; src: string }> = [];
  for (let n = 0; n < sockets; n++) {
    const s = createSocket('udp4');
    const names = new Set<string>();
    let src = '';
    for (let i = 0; i < each; i++) {
      const r = await exchange(s, () => s.send(`q${i}`, port, host));
      names.add(r.name);
      src = r.src;
    }
    unconnected.push({ names: [...names].sort(), src });
    s.close();
  }
  const c = createSocket('udp4');
  await new Promise<void>((resolve) => c.connect(port, host, resolve));
  const peer = c.remoteAddress(); // getpeername()
  const r = await exchange(c, () => c.send('hi'));
  c.close();
  out({ event: 'done', unconnected, peer: `${peer.address}:${peer.port}`, connected: r.name });
}

/** Deterministic bytes (xorshift), so both ends could regenerate them; digests compare the two. */
function fill(buf: Buffer, seed: { s: number }): void {
  for (let i = 0; i < buf.length; i += 4) {
    let x = seed.s;
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    seed.s = x >>> 0;
    buf.writeUInt32LE(seed.s, i);
  }
}

/**
 * Streams `total` bytes to an echo server in `chunkSize` writes and reports digests of what went
 * and what came back. TCP_NODELAY: set right after connecting (`after`: Node cannot set it
 * before, it applies `noDelay` once connected, as Go does) or never (`never`); `toggleEvery` > 0
 * flips it every that many writes, which moves a spliced socket's messages between the sockhash
 * and the stack mid-stream.
 */
function stream(host: string, port: number, total: number, chunkSize: number, nodelay: string, toggleEvery: number, intervalMs = 0): void {
  const started = process.hrtime.bigint();
  const sentHash = createHash('sha256');
  const recvHash = createHash('sha256');
  let received = 0;
  let noDelay = false;
  const sock: Socket = connect({ host, port });
  const seed = { s: 0x9e3779b9 };
  sock.on('connect', () => {
    if (nodelay === 'after') sock.setNoDelay((noDelay = true));
    let sent = 0;
    let writes = 0;
    const chunk = Buffer.alloc(chunkSize);
    const pump = () => {
      while (sent < total) {
        if (intervalMs && writes > 0) {
          // Paced: the connection lives long enough for something to happen to it mid-stream.
          const paced = () => { writes += 1; writeOne(); if (sent < total) setTimeout(paced, intervalMs); };
          setTimeout(paced, intervalMs);
          return;
        }
        if (toggleEvery && writes > 0 && writes % toggleEvery === 0) sock.setNoDelay((noDelay = !noDelay));
        writes += 1;
        if (!writeOne()) {
          sock.once('drain', pump);
          return;
        }
      }
    };
    const writeOne = (): boolean => {
      const n = Math.min(chunk.length, total - sent);
      fill(chunk, seed);
      const part = Buffer.from(chunk.subarray(0, n));
      sentHash.update(part);
      sent += n;
      return sock.write(part);
    };
    pump();
  });
  sock.on('data', (d: Buffer) => {
    if (intervalMs && received === 0) out({ event: 'progress', received: d.length });
    recvHash.update(d);
    received += d.length;
    if (received >= total) {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      out({ event: 'done', bytes: total, received, writes: Math.ceil(total / chunkSize), sent: sentHash.digest('hex'), echoed: recvHash.digest('hex'), ms });
      sock.destroy();
      process.exit(0);
    }
  });
  sock.on('error', (e) => {
    out({ event: 'error', message: e.message });
    process.exit(1);
  });
}

/**
 * An HTTP endpoint: answers every request with JSON {server, path, traceparent} and the status it
 * is told (stdin lines "status N", "delay MS" change it while it runs).
 */
function httpServe(host: string, port: number, name: string): void {
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
      const body = JSON.stringify({ server: name, path: req.url, traceparent: req.headers.traceparent ?? null });
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
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
function httpLoad(host: string, port: number, count: number, concurrency: number, header: string | undefined): void {
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

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    name: { type: 'string', default: 'server' },
    mode: { type: 'string', default: 'whoami' },
    bytes: { type: 'string', default: '1048576' },
    chunk: { type: 'string', default: '65536' },
    nodelay: { type: 'string', default: 'after' },
    count: { type: 'string', default: '0' },
    sockets: { type: 'string', default: '20' },
    each: { type: 'string', default: '3' },
    'toggle-nodelay': { type: 'string', default: '0' },
    'interval-ms': { type: 'string', default: '0' },
    'local-port': { type: 'string' },
    concurrency: { type: 'string', default: '1' },
    header: { type: 'string' },
  },
});
const port = Number(values.port);
switch (positionals[0]) {
  case 'serve': serve(values.host, port, values.name, values.mode); break;
  case 'ask': ask(values.host, port, values['local-port'] ? Number(values['local-port']) : undefined); break;
  case 'stream': stream(values.host, port, Number(values.bytes), Number(values.chunk), values.nodelay, Number(values['toggle-nodelay']), Number(values['interval-ms'])); break;
  case 'probe': probe(values.host, port); break;
  case 'repeat': repeat(values.host, port, Number(values.count)); break;
  case 'udp-serve': udpServe(values.host, port, values.name); break;
  case 'http-serve': httpServe(values.host, port, values.name); break;
  case 'http-load': httpLoad(values.host, port, Number(values.count), Number(values.concurrency), values.header); break;
  case 'udp-ask': udpAsk(values.host, port, Number(values.sockets), Number(values.each)).catch((e: Error) => {
    out({ event: 'error', message: e.message });
    process.exit(1);
  }); break;
  default:
    process.stderr.write('usage: peer serve|ask|stream|probe|repeat|udp-serve|udp-ask|http-serve|http-load --host H --port P [...]\n');
    process.exit(2);
}
