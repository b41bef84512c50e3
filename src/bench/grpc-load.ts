// The gRPC figures of `sockmesh bench --governance --traffic`, on @grpc/grpc-js (run in the bench's
// pods): `serve HOST PORT...` answers the unary method /bench.Echo/Unary with the request's bytes;
// `call HOST PORT CONCURRENCY SECONDS` keeps CONCURRENCY unary calls in flight on ONE channel (one
// HTTP/2 connection) for SECONDS and prints {grpc, count, errors, rps, p50, p99} (µs).
import * as grpc from '@grpc/grpc-js';

const same = (b: Buffer) => b;
const ECHO = {
  Unary: { path: '/bench.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: same, requestDeserialize: same, responseSerialize: same, responseDeserialize: same },
} as const;

function serve(host: string, ports: string[]): void {
  const server = new grpc.Server();
  server.addService(ECHO, { Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request) });
  let bound = 0;
  for (const port of ports) {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
      if (err) {
        process.stderr.write(`${err.message}\n`);
        process.exit(1);
      }
      if (++bound === ports.length) process.stdout.write(`${JSON.stringify({ event: 'ready', ports })}\n`);
    });
  }
  process.once('SIGTERM', () => { server.forceShutdown(); process.exit(0); });
}

function call(host: string, port: string, concurrency: number, seconds: number): void {
  const Client = grpc.makeGenericClientConstructor(ECHO, 'Echo');
  const client = new Client(`${host}:${port}`, grpc.credentials.createInsecure()) as unknown as { Unary: (b: Buffer, cb: (e: Error | null) => void) => void; close(): void };
  const body = Buffer.alloc(64, 'x');
  const lat: number[] = [];
  let errors = 0;
  let running = 0;
  let end = 0;
  const next = (): void => {
    if (performance.now() >= end) {
      if (--running === 0) done();
      return;
    }
    const t0 = performance.now();
    client.Unary(body, (err) => {
      if (err) errors += 1;
      else lat.push((performance.now() - t0) * 1000);
      next();
    });
  };
  const done = () => {
    lat.sort((a, b) => a - b);
    const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? 0;
    process.stdout.write(`${JSON.stringify({ grpc: 'unary', count: lat.length, errors, rps: lat.length / seconds, p50: q(0.5), p99: q(0.99) })}\n`);
    client.close();
    process.exit(errors ? 1 : 0);
  };
  // One call first: the channel connects before the clock starts.
  client.Unary(body, (err) => {
    if (err) {
      process.stderr.write(`first call: ${err.message}\n`);
      process.exit(1);
    }
    end = performance.now() + seconds * 1000;
    running = concurrency;
    for (let i = 0; i < concurrency; i++) next();
  });
}

const [cmd, host, ...rest] = process.argv.slice(2);
if (cmd === 'serve' && host && rest.length) serve(host, rest);
else if (cmd === 'call' && host && rest.length === 3) call(host, rest[0], Number(rest[1]), Number(rest[2]));
else {
  process.stderr.write('usage: grpc-load serve HOST PORT... | call HOST PORT CONCURRENCY SECONDS\n');
  process.exit(2);
}
