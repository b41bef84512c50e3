// Policy versions that only change endpoints (added, removed, weights) are applied through
// HAProxy's runtime API instead of a reload: no new worker, no connection of the old one closed.
// A removed endpoint is put in maintenance (drained: its open connections finish); one that comes
// back is made ready again; a new one is added as a dynamic server. Anything else is a reload.
import { connect } from 'node:net';
import type { Endpoint, MeshConfig, ServiceConfig } from '../config/model.js';
import { Codes, SockmeshError } from '../errors.js';
import { governed, serverAddr, serverName, serverOptions, targetPorts } from './haproxy.js';
import { outboundBackends, weightCommands } from './routes.js';

/** The servers HAProxy has in each backend now (rendered, plus added since the last reload). */
export type RuntimeServers = Map<string, Set<string>>;

/** The servers of a rendered configuration. */
export function renderedServers(cfg: MeshConfig): RuntimeServers {
  return new Map(governed(cfg).flatMap((s) => outboundBackends(cfg, s)).map((b) => [b.name, new Set((b.service.endpoints ?? []).map(serverName))]));
}

/** The config but what the runtime API changes: endpoints (their labels: which subset they are in) and the routes' weights. */
function withoutEndpoints(cfg: MeshConfig): string {
  return JSON.stringify({
    ...cfg,
    services: cfg.services.map(({ endpoints, ...rest }) => ({
      ...rest, hasEndpoints: !!endpoints?.length,
      ...(rest.policy?.routes ? { policy: { ...rest.policy, routes: rest.policy.routes.map((r) => ({ ...r, route: r.route.map((d) => ({ ...d, weight: 0 })) })) } } : {}),
    })),
  });
}

/**
 * The runtime API commands that take HAProxy from \`before\` to \`after\`, or undefined when the
 * change needs a reload (anything but endpoints, a service gaining or losing all its endpoints, or
 * inbound ports that follow endpoint ports).
 */
export function runtimePlan(before: MeshConfig, after: MeshConfig, present: RuntimeServers,
  tls: (e: Endpoint, s: ServiceConfig) => string[] = () => []): string[] | undefined {
  if (withoutEndpoints(before) !== withoutEndpoints(after)) return undefined;
  const cmds: string[] = weightCommands(governed(before), governed(after));
  const byName = new Map(before.services.map((s) => [s.name, s]));
  for (const svc of governed(after)) {
    const b0 = byName.get(svc.name) as ServiceConfig;
    if (JSON.stringify(targetPorts(b0)) !== JSON.stringify(targetPorts(svc))) return undefined;
    const was = new Map(outboundBackends(before, b0).map((x) => [x.name, x]));
    for (const ob of outboundBackends(after, svc)) {
      const s = ob.service;
      const b = was.get(ob.name)?.service;
      // The original destination's server (a service without endpoints) is rendered, never added.
      if (!b || ob.original !== was.get(ob.name)!.original) return undefined;
      if (ob.original) continue;
      const backend = ob.name;
      const old = new Map((b.endpoints ?? []).map((e) => [serverName(e), e]));
      const now = new Map((s.endpoints ?? []).map((e) => [serverName(e), e]));
      const have = present.get(backend) ?? new Set<string>();
      for (const [name, e] of now) {
        const o = old.get(name);
        const server = `${backend}/${name}`;
        if (!have.has(name)) {
          cmds.push(`add server ${server} ${serverAddr(e)} ${[...serverOptions(e, s), ...tls(e, s)].join(' ')}`, `enable server ${server}`);
          if (s.policy?.outlierDetection) cmds.push(`enable health ${server}`);
        } else if (!o) {
          cmds.push(`set server ${server} weight ${e.weight}`, `set server ${server} state ready`);
        } else if (o.weight !== e.weight) {
          cmds.push(`set server ${server} weight ${e.weight}`);
        }
      }
      for (const name of old.keys()) if (!now.has(name)) cmds.push(`set server ${backend}/${name} state maint`);
    }
  }
  return cmds;
}

/** Servers the commands leave in HAProxy (added ones join; none leaves before a reload). */
export function afterCommands(present: RuntimeServers, cmds: string[]): RuntimeServers {
  const out = new Map([...present].map(([b, s]) => [b, new Set(s)]));
  for (const c of cmds) {
    const m = /^add server ([^/]+)\/(\S+) /.exec(c);
    if (m) (out.get(m[1]) ?? out.set(m[1], new Set()).get(m[1])!).add(m[2]);
  }
  return out;
}

/** A command as errors may name it: its first line, never a payload after `<<` (a certificate's key). */
export function commandName(cmd: string): string {
  const first = cmd.split('\n')[0];
  return first.includes('<<') ? `${first.slice(0, first.indexOf('<<')).trim()} <<(payload)` : first.slice(0, 200);
}

/** Asks HAProxy's runtime API something (`show info`); its answer as text. */
export function adminQuery(socket: string, cmd: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let out = '';
    const timer = setTimeout(() => { s.destroy(); reject(new SockmeshError(Codes.SYSCALL, `HAProxy runtime API (${socket}): no answer to "${commandName(cmd)}" in ${timeoutMs} ms`)); }, timeoutMs);
    s.on('data', (d: Buffer) => { out += d.toString(); });
    s.on('error', (err) => { clearTimeout(timer); reject(new SockmeshError(Codes.SYSCALL, `HAProxy runtime API (${socket}): ${err.message}`)); });
    s.on('end', () => { clearTimeout(timer); resolve(out); });
    s.end(`${cmd}\n`);
  });
}

/** Runs one command on HAProxy's runtime API (its admin socket); throws on an error answer. */
export function adminCommand(socket: string, cmd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let out = '';
    s.on('data', (d: Buffer) => { out += d.toString(); });
    s.on('error', (err) => reject(new SockmeshError(Codes.SYSCALL, `HAProxy runtime API (${socket}): ${err.message}`)));
    s.on('end', () => {
      const answer = out.trim();
      // Success is silent, except for these confirmations.
      if (answer && !/^(New server registered\.|.*changed from .* to .*)$/s.test(answer)) reject(new SockmeshError(Codes.INTERNAL, `HAProxy refused "${commandName(cmd)}": ${answer.slice(0, 200)}`));
      else resolve(answer);
    });
    s.end(`${cmd}\n`);
  });
}
