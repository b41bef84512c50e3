// The agent's answers on the control socket. A sidecar's long poll and a pod's `wait` are answered
// outside the one-at-a-time lane of the others, which also wait for the start to be over. Who may
// ask what is checked by the server (src/control/server.ts) before a request gets here.
import type { Caller } from '../control/peer.js';
import type { ControlRequest } from '../control/protocol.js';
import { Codes, UserError } from '../errors.js';
import type { OverrideStore } from '../instance/overrides.js';
import { status } from '../instance/status.js';
import type { Applier } from './applier.js';
import type { PodIdentities } from './identities.js';
import type { PodWatch } from './pod-watch.js';
import type { PolicyFeed } from './policy-feed.js';
import type { RecordWriter } from './record-writer.js';
import type { AgentSource } from './source-cell.js';

export interface ControlParts {
  instance: string;
  applier: Applier;
  source: AgentSource;
  overrides: OverrideStore;
  policy: PolicyFeed;
  identities: PodIdentities;
  pods: PodWatch;
  records: RecordWriter;
}

export function controlHandler(p: ControlParts): (req: ControlRequest, caller: Caller) => Promise<unknown> {
  return (req, caller) => {
    if (req.op === 'policy') return p.policy.poll(req, () => p.applier.instance?.meshedPodOf(caller)?.name);
    if (req.op === 'wait') return p.pods.wait(req, caller);
    if (req.op === 'identity') return identity(p, req, caller);
    if (!p.applier.ready) return Promise.reject(new UserError(Codes.INSTANCE_BUSY, `the agent of instance "${p.instance}" is starting: ask again in a moment`));
    return p.applier.serialize(() => answer(p, req));
  };
}

/** The caller's own pod's certificate and key: to the pod's sidecar only, found by the caller's cgroup and namespace. */
async function identity(p: ControlParts, req: Extract<ControlRequest, { op: 'identity' }>, caller: Caller): Promise<unknown> {
  const pod = p.applier.instance?.meshedPodOf(caller);
  if (!pod) {
    throw new UserError(Codes.FORBIDDEN, `the caller (uid ${caller.uid}, cgroup id ${caller.cgroupId ?? 'unknown'}) is in no meshed pod of instance "${p.instance}": a pod's identity goes to that pod's sidecar only`);
  }
  p.identities.check(pod.name, caller.uid);
  return { pod: pod.name, ...(await p.identities.get(pod.name, req.have)) };
}

async function answer(p: ControlParts, req: Exclude<ControlRequest, { op: 'policy' | 'wait' | 'identity' }>): Promise<unknown> {
  switch (req.op) {
    case 'status':
      p.records.flush();
      return {
        ...(await status(p.instance)),
        agent: {
          pid: process.pid, ready: p.applier.ready, source: { path: p.source.description, ...p.source.state },
          overrides: p.overrides.all(), lastApply: p.applier.lastApply, unresolvedPods: p.applier.unresolved(),
          policyVersion: p.policy.version, sidecars: p.policy.live(), identities: p.identities.seen(), ...(p.identities.caInfo() ? { ca: p.identities.caInfo() } : {}),
        },
      };
    case 'service': {
      const known = p.applier.services();
      if (!known.includes(req.name)) {
        throw new UserError(Codes.SERVICE_UNKNOWN, `no service "${req.name}" in the config (services: ${known.join(', ') || '(none)'})`);
      }
      p.overrides.set(req.name, req.redirect);
      const changes = await p.applier.apply(`service ${req.name} ${req.redirect ? 'enabled' : 'disabled'} by override`);
      return { service: req.name, redirect: req.redirect, override: true, changed: Object.keys(changes).length > 0 };
    }
    case 'reset': {
      const had = p.overrides.reset(req.name);
      const changes = had ? await p.applier.apply(`override of service ${req.name} reset`) : {};
      return { service: req.name, override: false, hadOverride: had, changed: Object.keys(changes).length > 0 };
    }
  }
}
