// terminateOnRemove: closing the open connections of a kernel-mode service to endpoints that left
// its list. The kernel's SOCK_DESTROY (`ss -K`, CONFIG_INET_DIAG_DESTROY, Linux 4.5 and later)
// closes a socket named by its exact tuple in the pod's network namespace; the app sees
// ECONNABORTED on its next call. Only sockets that connect4 sent there for this service are
// closed (their cookie is in sm_cookie_svc with the service's id): a connection that went to the
// same address by itself is left alone. It runs after the slot flipped, so no new connection can
// be given a removed endpoint while the old ones are closed.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { MeshConfig } from '../config/model.js';
import { endpointName } from '../config/constants.js';
import { backendCodec } from '../bpf/codecs.js';
import type { InstanceMaps } from '../bpf/maps.js';
import { removedEndpoints, type RemovedEndpoint } from '../plan/removed.js';
import { netnsPath } from './pods.js';
import { Codes, SockmeshError } from '../errors.js';
import { execTool } from '../util/exec.js';
import type { ServiceIds } from '../plan/desired.js';

/**
 * The network namespaces of the processes in a cgroup tree (the single-pod form without --netns
 * captures any namespace: its sockets live where its processes do), one /proc/PID/ns/net path each.
 */
export function namespacesOfCgroup(cgroup: string): string[] {
  const byInode = new Map<string, string>();
  const walk = (dir: string) => {
    let procs: string[] = [];
    try {
      procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    } catch {
      return; // gone meanwhile
    }
    for (const pid of procs) {
      try {
        const id = readlinkSync(`/proc/${pid}/ns/net`);
        if (!byInode.has(id)) byInode.set(id, `/proc/${pid}/ns/net`);
      } catch {
        // exited meanwhile
      }
    }
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
  };
  walk(cgroup);
  return [...byInode.values()];
}

/** Runs ss in a network namespace (a path; undefined: this process's own). */
function ss(netns: string | undefined, args: string[]) {
  return netns ? execTool('nsenter', [`--net=${netns}`, 'ss', ...args]) : execTool('ss', args);
}

/** One connection as `ss -tnHe` prints it: local and peer address:port, and the socket cookie. */
const LINE = /^\S+\s+\d+\s+\d+\s+(\S+):(\d+)\s+(\S+):(\d+)\s.*\bsk:([0-9a-f]+)/;

/**
 * Closes, in each namespace, the connections of these removed endpoints that connect4 made for
 * their service (`serviceOf(cookie)` answers from sm_cookie_svc). Returns how many it closed.
 */
export async function terminateConnections(removed: RemovedEndpoint[], namespaces: Array<string | undefined>,
  serviceOf: (cookie: bigint) => number | undefined): Promise<number> {
  let closed = 0;
  for (const netns of namespaces) {
    for (const r of removed) {
      const filter = ['dst', r.address, ...(r.port ? ['dport', '=', `:${r.port}`] : [])];
      const list = await ss(netns, ['-tnHe', 'state', 'connected', ...filter]);
      if (list.code !== 0) throw new SockmeshError(Codes.INTERNAL, `ss in ${netns ?? 'this namespace'} failed: ${list.stderr.trim()}`);
      for (const line of list.stdout.split('\n')) {
        const m = LINE.exec(line.trim());
        if (!m || serviceOf(BigInt(`0x${m[5]}`)) !== r.serviceId) continue;
        const kill = await ss(netns, ['-K', '-tnH', 'state', 'connected', 'src', m[1], 'sport', '=', `:${m[2]}`, 'dst', m[3], 'dport', '=', `:${m[4]}`]);
        if (kill.code !== 0) throw new SockmeshError(Codes.NOT_SUPPORTED, `ss -K could not close ${m[1]}:${m[2]} -> ${m[3]}:${m[4]} (SOCK_DESTROY needs CONFIG_INET_DIAG_DESTROY): ${kill.stderr.trim()}`);
        closed += 1;
      }
    }
  }
  return closed;
}

/**
 * terminateOnRemove: closes the connections that endpoints removed by this apply still carry, in
 * every pod's namespace (the single-pod form: its --netns, else those of the processes in its
 * cgroup). Run after the flip.
 */
export async function closeRemovedEndpoints(maps: InstanceMaps, before: MeshConfig | undefined, after: MeshConfig, ids: ServiceIds,
  where: { cgroup: string; netns?: string }): Promise<number> {
  const removed = removedEndpoints(before, after, ids);
  if (!removed.length) return 0;
  // UDP has no connection to close: a socket's next datagram picks again.
  const udp = new Set(after.services.filter((s) => s.protocol === 'udp').map((s) => s.name));
  const gone = new Set(removed.filter((r) => udp.has(r.service)).map((r) => endpointName({ address: r.address, port: r.port })));
  for (const { key, value } of gone.size ? maps.udpPick.rawEntries() : []) {
    const to = backendCodec.decode(value);
    if (gone.has(endpointName({ address: to.ip4, port: to.port }))) maps.udpPick.deleteRaw(key);
  }
  const namespaces = after.pods.length ? after.pods.flatMap((p) => (p.netns ? [netnsPath(p.netns)] : []))
    : where.netns ? [netnsPath(where.netns)] : namespacesOfCgroup(where.cgroup);
  return terminateConnections(removed, [...new Set(namespaces)], (cookie) => maps.cookieSvc.get(cookie as unknown as number)?.serviceId);
}
