// The TCP peers of src/topology/peer.ts: servers (whoami, echo, a stand-in sidecar listener that
// answers with SO_ORIGINAL_DST) and clients (ask, probe, repeat, stream).
import { createHash } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { originalDst } from '../../native/sockopt.js';
import { socketFd } from '../util/fd.js';
import { out } from './peer-io.js';

export function serve(host: string, port: number, name: string, mode: string): void {
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

export function ask(host: string, port: number, localPort?: number): void {
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
export function probe(host: string, port: number): void {
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
export function repeat(host: string, port: number, count: number): void {
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
export function stream(host: string, port: number, total: number, chunkSize: number, nodelay: string, toggleEvery: number, intervalMs = 0): void {
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
