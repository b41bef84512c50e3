// The UDP peers of src/topology/peer.ts: a server that names itself, a client through a service.
import { createSocket, type Socket as Socket4 } from 'node:dgram';
import { out } from './peer-io.js';

/** A UDP server answering each datagram with "<name> <datagram>" to its sender. */
export function udpServe(host: string, port: number, name: string): void {
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
export async function udpAsk(host: string, port: number, sockets: number, each: number): Promise<void> {
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
