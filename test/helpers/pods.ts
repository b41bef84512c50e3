// Asking through a pod of a NodeTopology: one new connection from the pod, one line, the reply;
// or a real client (curl, openssl) run in the pod's network namespace.
import { execFileSync, spawnSync } from 'node:child_process';
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

/**
 * iptables mode captures after routing: gives the pods of `node` a route for 10.96.0.0/16 into a
 * namespace (`sm-<name>-r`, made here; remove it with the returned function) that owns the whole
 * range and answers with a reset, so an uncaptured connection fails at once (ECONNREFUSED)
 * instead of hanging. Pod i gets 10.250.i.1/30 on eth0.
 */
export function routeToRefusingRemote(node: NodeTopology, pods: string[]): () => void {
  const remote = `sm-${node.name}-r`;
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  ip('netns', 'add', remote);
  ip('-n', remote, 'link', 'set', 'lo', 'up');
  ip('-n', remote, 'route', 'add', 'local', '10.96.0.0/16', 'dev', 'lo');
  pods.forEach((pod, i) => {
    const ns = node.pod(pod).netns;
    ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `v${pod}`, 'netns', remote);
    ip('-n', ns, 'addr', 'add', `10.250.${i}.1/30`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', remote, 'addr', 'add', `10.250.${i}.2/30`, 'dev', `v${pod}`);
    ip('-n', remote, 'link', 'set', `v${pod}`, 'up');
    ip('-n', ns, 'route', 'add', 'default', 'via', `10.250.${i}.2`);
  });
  return () => {
    try { ip('netns', 'del', remote); } catch { /* not made */ }
  };
}

/** A stand-in sidecar in `pod` as uid 1337 (iptables mode tells the sidecar's own traffic apart by
 * owner) on 0.0.0.0:15001, answering with the SO_ORIGINAL_DST it read. */
export async function uidSidecar(node: NodeTopology, pod: string): Promise<void> {
  const s = node.spawn(pod, 'setpriv', ['--reuid=1337', '--regid=1337', '--clear-groups', process.execPath, PEER, 'serve', '--host', '0.0.0.0', '--port', '15001', '--name', `sidecar-${pod}`, '--mode', 'origdst'], `sidecar ${pod}`);
  await s.waitFor((l) => l.event === 'ready', slow(30_000));
}

/** `cmd` run in a pod's network namespace (not its cgroup: never captured outbound), with `input` on stdin; its exit code and output. */
export function inPodNetns(node: NodeTopology, pod: string, cmd: string[], input = ''): { code: number; out: string } {
  const r = spawnSync('ip', ['netns', 'exec', node.pod(pod).netns, ...cmd], { input, encoding: 'utf8', timeout: slow(15_000) });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}
