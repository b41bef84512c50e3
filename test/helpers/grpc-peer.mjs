// A gRPC server and client on @grpc/grpc-js for the end-to-end tests (run in a test's namespaces):
//   serve --host H --port P --name N   Echo.Unary answers {server}, Echo.Items streams 5 items,
//                                      Echo.Missing fails with NOT_FOUND; one JSON line "ready"
//   call --host H --port P --count N   N unary calls on ONE channel (one HTTP/2 connection), then
//                                      one streaming call and one failing call; one JSON summary
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO = `syntax = "proto3";
package sockmesh.test;
message Req { string text = 1; }
message Rep { string server = 1; string text = 2; }
service Echo {
  rpc Unary (Req) returns (Rep);
  rpc Items (Req) returns (stream Rep);
  rpc Missing (Req) returns (Rep);
}
`;
const file = join(tmpdir(), `sockmesh-echo-${process.pid}.proto`);
writeFileSync(file, PROTO);
const Echo = grpc.loadPackageDefinition(protoLoader.loadSync(file, { keepCase: true })).sockmesh.test.Echo;
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const { positionals, values } = parseArgs({ allowPositionals: true, options: { host: { type: 'string' }, port: { type: 'string' }, name: { type: 'string', default: 'server' }, count: { type: 'string', default: '10' } } });
const addr = `${values.host}:${values.port}`;

if (positionals[0] === 'serve') {
  const server = new grpc.Server();
  server.addService(Echo.service, {
    Unary: (call, cb) => cb(null, { server: values.name, text: call.request.text }),
    Items: (call) => { for (let i = 0; i < 5; i++) call.write({ server: values.name, text: `item-${i}` }); call.end(); },
    Missing: (_call, cb) => cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
  });
  server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) { out({ event: 'error', error: err.message }); process.exit(1); }
    out({ event: 'ready', addr });
  });
  process.once('SIGTERM', () => server.forceShutdown());
} else if (positionals[0] === 'call') {
  // One client object: one channel, pick_first, one HTTP/2 connection for every call.
  const client = new Echo(addr, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const unary = (text) => new Promise((resolve) => client.Unary({ text }, { deadline: Date.now() + 10_000 }, (err, rep) => resolve(err ? { error: err.code } : rep)));
  const servers = {};
  let errors = 0;
  for (let i = 0; i < Number(values.count); i++) {
    const r = await unary(`u${i}`);
    if (r.error !== undefined) errors += 1;
    else servers[r.server] = (servers[r.server] ?? 0) + 1;
  }
  const items = await new Promise((resolve) => {
    const got = [];
    const s = client.Items({ text: 's' });
    s.on('data', (d) => got.push(d.text));
    s.on('error', (e) => resolve({ error: e.code, got }));
    s.on('end', () => resolve({ got }));
  });
  const missing = await new Promise((resolve) => client.Missing({ text: 'm' }, (err) => resolve(err ? err.code : 0)));
  out({ event: 'done', calls: Number(values.count), errors, servers, items, missing });
  client.close();
  process.exit(0);
} else {
  process.stderr.write('usage: grpc-peer.mjs serve|call --host H --port P [--name N] [--count N]\n');
  process.exit(2);
}
