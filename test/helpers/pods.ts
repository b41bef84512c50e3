// Asking through a pod of a NodeTopology: one new connection from the pod, one line, the reply.
import type { NodeTopology } from '../../src/topology/node.js';
import { PEER } from './mesh.js';
import { slow } from './slow.js';

/** The server's JSON reply to one line over a new connection from `pod` to host:port, or
 * { error } when the connection fails. */
export async function askFromPod(node: NodeTopology, pod: string, host: string, port = 9080): Promise<Record<string, unknown>> {
  const proc = node.spawnNode(pod, PEER, ['ask', '--host', host, '--port', String(port)], `client ${pod} -> ${host}:${port}`);
  try {
    const first = await proc.waitFor((l) => l.event === 'connected' || l.event === 'error', slow(10_000));
    if (first.event === 'error') return { error: first.message };
    proc.send('hi');
    return (await proc.waitFor((l) => l.event === 'reply', slow(10_000))).reply as Record<string, unknown>;
  } catch (e) {
    return { error: `${(e as Error).message} ${proc.stderr}` };
  } finally {
    proc.child.stdin!.end();
  }
}
