// Splice stress peer: one process that is both ends of many captured connections, for tests of
// the spliced data path (order, integrity, memory). Run it inside a topology's mesh cgroup:
//   stress --listen 127.0.0.1:15001 --target 10.96.0.20:9080 --conns N --parallel P --bytes B
//          [--max-chunk C] [--hold-ms H] [--pause-every-ms E]
// The listener stands in for the sidecar; each client connects to the target (connect4 rewrites
// it to the listener) and writes B bytes of a counting stream (the 32-bit little-endian word at
// byte offset 4k is k) in random chunk sizes up to C. The listener checks every byte in order.
// Each accepted socket reads nothing for H ms (a slow sidecar), and then pauses briefly at random.
// Host TCP memory (/proc/net/sockstat, pages) is sampled every 10 ms. Prints one JSON line:
//   {"event":"done","conns","bytes","mismatches","errors","tcpMemBefore","tcpMemPeak","tcpMemAfter","ms"}
// It stops by itself: every run is bounded by --conns × --bytes and a --deadline-ms (default 120 s).
import { readFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

function tcpMemPages(): number {
  const m = /TCP: .* mem (\d+)/.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return m ? Number(m[1]) : -1;
}

/** Bytes [offset, offset+len) of the counting stream. */
function streamBytes(offset: number, len: number): Buffer {
  const start = offset - (offset % 4);
  const words = Math.ceil((offset + len - start) / 4);
  const buf = Buffer.alloc(words * 4);
  for (let i = 0; i < words; i++) buf.writeUInt32LE((start / 4 + i) >>> 0, i * 4);
  return buf.subarray(offset - start, offset - start + len);
}

const { values } = parseArgs({
  options: {
    listen: { type: 'string', default: '127.0.0.1:15001' },
    target: { type: 'string', default: '10.96.0.20:9080' },
    conns: { type: 'string', default: '100' },
    parallel: { type: 'string', default: '8' },
    bytes: { type: 'string', default: '65536' },
    'max-chunk': { type: 'string', default: '16384' },
    'hold-ms': { type: 'string', default: '0' },
    'pause-every-ms': { type: 'string', default: '0' },
    'deadline-ms': { type: 'string', default: '120000' },
  },
});
const [lhost, lport] = values.listen.split(':');
const [thost, tport] = values.target.split(':');
const conns = Number(values.conns);
const parallel = Number(values.parallel);
const bytes = Number(values.bytes);
const maxChunk = Number(values['max-chunk']);
const holdMs = Number(values['hold-ms']);
const pauseEvery = Number(values['pause-every-ms']);

const result = { event: 'done', conns: 0, bytes: 0, mismatches: 0, errors: [] as string[], tcpMemBefore: tcpMemPages(), tcpMemPeak: 0, tcpMemAfter: 0, ms: 0 };
const started = Date.now();
result.tcpMemPeak = result.tcpMemBefore;
const sampler = setInterval(() => { result.tcpMemPeak = Math.max(result.tcpMemPeak, tcpMemPages()); }, 10);

function finish(): void {
  clearInterval(sampler);
  result.tcpMemPeak = Math.max(result.tcpMemPeak, tcpMemPages());
  result.ms = Date.now() - started;
  // Closed sockets give their memory back asynchronously: sample once more a little later.
  setTimeout(() => {
    result.tcpMemAfter = tcpMemPages();
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  }, 200);
}

setTimeout(() => {
  result.errors.push(`deadline: ${result.conns} of ${conns} connections done`);
  finish();
}, Number(values['deadline-ms'])).unref();

function receive(sock: Socket): void {
  let offset = 0;
  let bad = false;
  sock.pause();
  const resume = () => { if (!sock.destroyed) sock.resume(); };
  setTimeout(resume, holdMs);
  sock.on('data', (d: Buffer) => {
    if (!bad && !d.equals(streamBytes(offset, d.length))) {
      bad = true;
      result.mismatches += 1;
    }
    offset += d.length;
    if (pauseEvery && Math.random() < 0.05) {
      sock.pause();
      setTimeout(resume, Math.random() * pauseEvery);
    }
  });
  sock.on('end', () => {
    result.bytes += offset;
    if (offset !== bytes) result.errors.push(`received ${offset} of ${bytes} bytes`);
    sock.end();
  });
  sock.on('error', (e) => result.errors.push(`accepted socket: ${e.message}`));
}

let launched = 0;
let finished = 0;

function send(): void {
  if (launched >= conns) return;
  launched += 1;
  const sock = connect({ host: thost, port: Number(tport), noDelay: true });
  let offset = 0;
  const pump = () => {
    while (offset < bytes) {
      const n = Math.min(bytes - offset, 1 + Math.floor(Math.random() * maxChunk));
      const chunk = streamBytes(offset, n);
      offset += n;
      if (!sock.write(chunk)) return; // wait for 'drain'
    }
    sock.end();
  };
  sock.on('connect', pump);
  sock.on('drain', pump);
  sock.on('error', (e) => result.errors.push(`client: ${e.message}`));
  sock.on('close', () => {
    finished += 1;
    result.conns += 1;
    if (finished === conns) setTimeout(finish, 50);
    else send();
  });
  sock.resume(); // the listener half-closes back: read and discard
}

const server = createServer({ noDelay: true, allowHalfOpen: true }, receive);
server.listen(Number(lport), lhost, () => {
  for (let i = 0; i < Math.min(parallel, conns); i++) send();
});
process.once('SIGTERM', () => process.exit(1));
