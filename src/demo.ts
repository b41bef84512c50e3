// `sockmesh demo`: a private namespace + cgroup with a client, a sidecar and a server; shows one
// captured connection with its original destination and the counters, then removes everything.
import { down, up } from './instance/lifecycle.js';
import { requireRoot } from './util/root.js';
import { status } from './instance/status.js';
import { loadConfig } from './config/load.js';
import { Topology } from './topology/topology.js';
import { checkInterrupted } from './util/interrupt.js';

export interface DemoResult {
  instance: string;
  service: string;
  serviceAddress: string;
  reply: Record<string, unknown>;
  sidecarSaw: Record<string, unknown>;
  counters: Record<string, number>;
}

const CLI = 'bin/sockmesh.js';
const PEER = 'dist/src/topology/peer.js';

export async function runDemo(progress: (msg: string) => void): Promise<DemoResult> {
  requireRoot();
  const config = loadConfig(undefined);
  const svc = config.services[0];
  const [addr, port] = [svc.addresses[0] ?? '127.0.0.1', svc.ports[0]];
  const name = `demo-${process.pid}`;
  progress(`creating namespace sm-${name} and cgroup sockmesh-${name} (service ${svc.name} at ${addr}:${port})`);
  const topo = await Topology.create(name, { podAddresses: svc.addresses });
  let isUp = false;
  try {
    const server = topo.spawnNode(PEER, ['serve', '--host', addr, '--port', String(port), '--name', svc.name], { cgroup: 'outside', label: 'server' });
    const sidecar = topo.spawnNode(CLI, ['sidecar', '--address', config.sidecar.address, '--outbound-port', String(config.sidecar.outboundPort),
      '--uid', String(config.sidecar.uid), '--gid', String(config.sidecar.gid), '--log-connections'], { cgroup: 'mesh', label: 'sidecar' });
    await Promise.all([server.waitFor((l) => l.event === 'ready'), sidecar.waitFor((l) => l.event === 'ready')]);
    progress(`server listening on ${addr}:${port} outside the mesh cgroup; sidecar on ${config.sidecar.address}:${config.sidecar.outboundPort} as uid ${config.sidecar.uid}`);
    checkInterrupted();
    await up({ instance: name, cgroup: topo.cgroup, config, configSource: '(embedded default)' });
    isUp = true;
    progress(`sockmesh up: programs attached to ${topo.cgroup}`);
    checkInterrupted();
    const client = topo.spawnNode(PEER, ['ask', '--host', addr, '--port', String(port)], { cgroup: 'mesh', label: 'client' });
    await client.waitFor((l) => l.event === 'connected');
    client.send('hello through the mesh');
    const reply = (await client.waitFor((l) => l.event === 'reply')).reply as Record<string, unknown>;
    const saw = await sidecar.waitFor((l) => l.event === 'connection');
    progress(`client connected to ${addr}:${port}; sidecar read SO_ORIGINAL_DST ${JSON.stringify(saw.originalDst)}; server answered ${JSON.stringify(reply)}`);
    const counters = (await status(name)).counters;
    return { instance: name, service: svc.name, serviceAddress: `${addr}:${port}`, reply, sidecarSaw: saw, counters };
  } finally {
    if (isUp) await down(name);
    await topo.close();
    progress('removed the instance, the namespace and the cgroup');
  }
}
