// A node's desired state from what the Kubernetes source knows: its Services (each validated when
// it changed), the meshed pods of the node where they were found, and the node-wide settings. Pure.
// One object never makes the whole state invalid: a conflict or a full map leaves out the object
// that causes it (admit.ts states the order), and whatever validation still refuses as a whole is
// traced to the objects its problems name, which are left out too; each one left out comes back
// as a refusal for the source to report on the object.
import type { AuthorizationPolicy, MeshConfig, PeerAuthentication, PeerWorkload } from '../../config/model.js';
import { validateState } from '../../config/validate/index.js';
import { ConfigError, describe } from '../../errors.js';
import type { SourceEvent } from '../source.js';
import { admitServices, type Candidate } from './admit.js';
import type { Problem } from './annotations.js';
import type { ObjectRef } from './events.js';
import type { Located } from './locate.js';
import type { KPod, KService } from './objects.js';
import type { PodWanted } from './translate.js';

export interface Refusal {
  ref: ObjectRef;
  problems: Problem[];
  reason: string;
  lead: string;
}

export interface NodePod {
  obj: KPod;
  wanted: PodWanted;
  /** Where it was found on the node; undefined or missing: not there yet. */
  where: Located | { missing: string } | undefined;
}

export interface NodeState {
  event: Extract<SourceEvent, { kind: 'config' | 'rejected' }>;
  refusals: Refusal[];
  /** Meshed pods not found on the node yet. */
  pending: Array<{ pod: string; message: string }>;
}

const serviceRef = (s: KService): ObjectRef => ({ kind: 'Service', apiVersion: 'v1', metadata: s.metadata });
const podRef = (p: KPod): ObjectRef => ({ kind: 'Pod', apiVersion: 'v1', metadata: p.metadata });

/** The state of a node: `pods` in admission order (oldest first). */
export function nodeState(base: MeshConfig, candidates: Array<Candidate<KService>>, pods: NodePod[], source: string,
  security: { peerAuthentications: PeerAuthentication[]; authorizationPolicies: AuthorizationPolicy[] } = { peerAuthentications: [], authorizationPolicies: [] },
  peers: PeerWorkload[] = []): NodeState {
  const refusals: Refusal[] = [];
  const pending: NodeState['pending'] = [];
  const admitted = admitServices(candidates);
  for (const r of admitted.refused) refusals.push({ ref: serviceRef(r.obj), problems: [{ field: r.field, message: r.message }], reason: r.reason, lead: 'sockmesh does not apply all of this Service' });
  const services = admitted.services;
  const rawPods: unknown[] = [];
  const podObjects: KPod[] = [];
  for (const p of pods) {
    const l = p.where;
    if (!l || 'missing' in l) {
      pending.push({ pod: p.wanted.name, message: l?.missing ?? 'not on the node yet' });
      continue;
    }
    const w = p.wanted;
    const pod: Record<string, unknown> = {
      name: w.name, cgroup: l.cgroup, netns: l.netns, addresses: w.addresses.length ? w.addresses : undefined,
      namespace: w.namespace, serviceAccount: w.serviceAccount, labels: w.labels,
    };
    if (w.sidecarUid !== undefined && w.sidecarUid !== base.sidecar.uid) pod.sidecar = { uid: w.sidecarUid };
    if (Object.keys(w.capture).length) pod.capture = w.capture;
    rawPods.push(pod);
    podObjects.push(p.obj);
  }
  const byName = new Map(candidates.map((c) => [c.config.name, c.obj]));
  for (let round = 0; ; round++) {
    try {
      // A node with no meshed pod meshes nothing (never the single-pod form of a file config,
      // which would take the whole kubepods cgroup for one pod).
      const config = validateState(base, services, rawPods, source, { ...security, peers });
      return { event: { kind: 'config', config: { ...config, podsOnly: true }, source, ...(pending.length ? { unresolved: pending } : {}) }, refusals, pending };
    } catch (e) {
      const issues = e instanceof ConfigError ? e.issues : [{ path: '', message: describe(e) }];
      const left = round < 20 ? leaveOut(issues, services, rawPods, podObjects, byName) : [];
      if (!left.length) return { event: { kind: 'rejected', source, issues, message: e instanceof Error ? e.message : String(e) }, refusals, pending };
      refusals.push(...left);
    }
  }
}

/**
 * Removes from the lists the objects that validation problems name (services[i], pods[i]; the
 * newest one for a capacity problem of a whole list); returns a refusal for each. None when no
 * problem names an object (the state stays rejected).
 */
function leaveOut(issues: Array<{ path: string; message: string }>, services: MeshConfig['services'], pods: unknown[], podObjects: KPod[], byName: Map<string, KService>): Refusal[] {
  const drop = { services: new Map<number, string[]>(), pods: new Map<number, string[]>() };
  for (const i of issues) {
    const m = /^(services|pods)(?:\[(\d+)\])?/.exec(i.path);
    if (!m) continue;
    const list = m[1] as 'services' | 'pods';
    const n = list === 'services' ? services.length : pods.length;
    const at = m[2] !== undefined ? Number(m[2]) : n - 1; // the whole list: the newest goes
    if (at < 0 || at >= n) continue;
    drop[list].set(at, [...(drop[list].get(at) ?? []), `${i.path}: ${i.message}`]);
  }
  const out: Refusal[] = [];
  for (const [i, why] of [...drop.services].sort((a, b) => b[0] - a[0])) {
    const obj = byName.get(services[i].name);
    if (obj) out.push({ ref: serviceRef(obj), problems: why.map((w) => ({ field: 'spec', message: w })), reason: 'SockmeshNotApplied', lead: 'sockmesh leaves this Service out of the node\'s state' });
    services.splice(i, 1);
  }
  for (const [i, why] of [...drop.pods].sort((a, b) => b[0] - a[0])) {
    out.push({ ref: podRef(podObjects[i]), problems: why.map((w) => ({ field: 'spec', message: w })), reason: 'SockmeshNotApplied', lead: 'sockmesh does not mesh this Pod' });
    pods.splice(i, 1);
    podObjects.splice(i, 1);
  }
  return out;
}
