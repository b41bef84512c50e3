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
import { parseArgs } from 'node:util';
import { httpLoad, httpServe } from './peer-http.js';
import { out } from './peer-io.js';
import { ask, probe, repeat, serve, stream } from './peer-tcp.js';
import { udpAsk, udpServe } from './peer-udp.js';

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
