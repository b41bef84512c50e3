// Inbound capture's per-pod pieces: the sk_lookup program attached to each meshed pod's network
// namespace (a bpf_link per namespace, pinned under links/inbound-<netns cookie>, so it survives
// agent restarts and goes with the pins), and each pod's sidecar inbound listener in sm_listeners.
// sockops registers a listener when it starts listening; one that listened before sockmesh
// started is registered here, from a copy of the sidecar's own fd (pidfd_getfd).
import { closeSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import * as bpf from '../../native/libbpf.js';
import { openNetns } from '../../native/netns.js';
import { copyFd } from '../../native/pidfd.js';
import { NotSupportedError } from '../errors.js';
import { execTool } from '../util/exec.js';
import type { BpfMap } from './map.js';
import { progPath, type PinLayout } from './pins.js';
import { PROGRAMS } from './programs.js';

/** What attaching sk_lookup to a pod's namespace and registering its listener need of the pod. */
export interface InboundPod {
  name: string;
  podId: number;
  /** 0n: any namespace (no sk_lookup of its own). */
  netnsCookie: bigint;
  netnsPath?: string;
  sidecar: { inboundPort: number };
  capture: { includeInboundPorts: '*' | readonly number[] };
}

const PREFIX = 'inbound-';
export const INBOUND_PROGRAM = PROGRAMS.find((p) => p.target === 'netns')!;

export function inboundLinkPath(layout: PinLayout, netnsCookie: bigint): string {
  return `${layout.links}/${PREFIX}${netnsCookie}`;
}

/** The pinned sk_lookup links of the instance (one per pod namespace). */
export function inboundLinks(layout: PinLayout): string[] {
  if (!existsSync(layout.links)) return [];
  return readdirSync(layout.links).filter((n) => n.startsWith(PREFIX)).map((n) => `${layout.links}/${n}`);
}

/**
 * Attaches sm_inbound to the namespace of every pod that has one and detaches it from namespaces
 * no longer meshed. Returns the namespaces attached and detached (by pod name / link pin), and the
 * pods it could not attach to (each tried; one pod's namespace going away stops no other).
 */
export function syncInboundLinks(layout: PinLayout, pods: readonly InboundPod[]): { attached: string[]; detached: string[]; failed: Array<{ pod: string; error: Error }> } {
  const want = new Map(pods.filter((p) => p.netnsCookie && p.netnsPath).map((p) => [inboundLinkPath(layout, p.netnsCookie), p]));
  const detached: string[] = [];
  for (const path of inboundLinks(layout)) {
    if (want.has(path)) continue;
    rmSync(path, { force: true }); // the pin held the only reference: the link goes, and with it the attachment
    detached.push(path);
  }
  const attached: string[] = [];
  const failed: Array<{ pod: string; error: Error }> = [];
  for (const [path, p] of want) {
    if (existsSync(path)) continue;
    mkdirSync(layout.links, { recursive: true, mode: 0o700 });
    try {
      attachInbound(layout, p, path);
      attached.push(p.name);
    } catch (error) {
      failed.push({ pod: p.name, error: error as Error });
    }
  }
  return { attached, detached, failed };
}

/** One pod's link: sm_inbound on its namespace, pinned at `path` (closing the fd without a pin would detach it). */
function attachInbound(layout: PinLayout, p: InboundPod, path: string): void {
  const prog = bpf.objGet(progPath(layout, INBOUND_PROGRAM));
  try {
    const ns = openNetns(p.netnsPath!);
    try {
      const link = bpf.linkCreate(prog, ns, INBOUND_PROGRAM.attachType, `${INBOUND_PROGRAM.name} on ${p.netnsPath}`);
      try {
        bpf.objPin(link, path);
      } finally {
        bpf.close(link);
      }
    } finally {
      closeSync(ns);
    }
  } catch (cause) {
    throw new NotSupportedError(INBOUND_PROGRAM.feature, `cannot attach ${INBOUND_PROGRAM.name} to the network namespace of pod ${p.name}`, { cause });
  } finally {
    bpf.close(prog);
  }
}

/** Moves every sk_lookup link to another program (an upgrade); returns how to move them back. */
export function updateInboundLinks(layout: PinLayout, newProg: string, oldProg: string): () => void {
  const moved: string[] = [];
  const move = (links: string[], prog: string) => {
    const progFd = bpf.objGet(prog);
    try {
      for (const l of links) {
        const fd = bpf.objGet(l);
        try {
          bpf.linkUpdate(fd, progFd, l);
        } finally {
          bpf.close(fd);
        }
      }
    } finally {
      bpf.close(progFd);
    }
  };
  for (const l of inboundLinks(layout)) {
    move([l], newProg);
    moved.push(l);
  }
  return () => move(moved, oldProg);
}

/** The pid and fd of a process listening on TCP `port` in a namespace, from `ss -p`. */
async function listenerIn(netnsPath: string, port: number): Promise<{ pid: number; fd: number } | undefined> {
  const r = await execTool('nsenter', [`--net=${netnsPath}`, 'ss', '-Hltnp', `sport = :${port}`]);
  if (r.code !== 0) return undefined;
  const m = /pid=(\d+),fd=(\d+)/.exec(r.stdout);
  return m ? { pid: Number(m[1]), fd: Number(m[2]) } : undefined;
}

/**
 * Registers the inbound listener of every pod with inbound capture that has none registered yet
 * (it listened before sockmesh, or before the pod was meshed). Returns the pods registered. Each
 * pod is looked at once (`seen`, by netns cookie, kept by the agent across applies): a sidecar
 * that starts listening later is registered by sockops as it listens.
 */
export async function registerListeners(listeners: BpfMap<number, number>, pods: readonly InboundPod[], seen = new Set<bigint>(),
  onError: (pod: string, error: Error) => void = (_pod, error) => { throw error; }): Promise<string[]> {
  const done: string[] = [];
  for (const p of pods) {
    const inbound = p.capture.includeInboundPorts === '*' || p.capture.includeInboundPorts.length > 0;
    if (!inbound || !p.netnsPath || seen.has(p.netnsCookie)) continue;
    seen.add(p.netnsCookie);
    try {
      if (listeners.get(p.podId) !== undefined) continue;
      const l = await listenerIn(p.netnsPath, p.sidecar.inboundPort);
      if (!l) continue;
      const fd = copyFd(l.pid, l.fd);
      try {
        listeners.set(p.podId, fd);
      } finally {
        bpf.close(fd);
      }
      done.push(p.name);
    } catch (error) {
      seen.delete(p.netnsCookie); // looked at again on the next apply
      onError(p.name, new Error(`cannot register the inbound listener of pod ${p.name}: ${(error as Error).message}`, { cause: error }));
    }
  }
  return done;
}
