// The istio-iptables rule set, in sockmesh's own nat chains. Pure: config in, rule text out.
// The order and meaning follow istio-init (tools/istio-iptables): outbound OUTPUT -> capture chain
// with RETURN for 127.0.0.6, the sidecar's uid/gid and non-meshed loopback, REDIRECT to the outbound
// port; inbound PREROUTING -> REDIRECT to the inbound port, Istio's own ports excluded.
import type { MeshConfig } from '../config/model.js';

export const CHAINS = {
  inbound: 'SOCKMESH_INBOUND',
  redirect: 'SOCKMESH_REDIRECT',
  inRedirect: 'SOCKMESH_IN_REDIRECT',
  output: 'SOCKMESH_OUTPUT',
} as const;

/** The jumps from the built-in chains; everything else lives in our chains. */
export function jumpRules(cfg: MeshConfig): string[] {
  const jumps = [`-A OUTPUT -p tcp -j ${CHAINS.output}`];
  if (cfg.capture.includeInboundPorts === '*' || cfg.capture.includeInboundPorts.length) {
    jumps.unshift(`-A PREROUTING -p tcp -j ${CHAINS.inbound}`);
  }
  return jumps;
}

const HBONE_PORT = 15008;

/** iptables' multiport match takes at most 15 ports per rule. */
export const MULTIPORT_MAX = 15;

function chunks<T>(list: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += n) out.push(list.slice(i, i + n));
  return out;
}

/**
 * The owner mark: the first rule of our output chain, a comment with no target (it matches and
 * does nothing). It names the sockmesh instance whose rules these are, so a second instance in
 * the same namespace is refused and `down` removes only its own.
 */
export function ownerRule(instance: string): string {
  return `-A ${CHAINS.output} -m comment --comment "sockmesh-instance=${instance}"`;
}

/** The instance that owns the rule set in an iptables-save dump; null = our chains, no mark. */
export function ruleOwner(natSave: string): string | null | undefined {
  if (!hasOurChains(natSave)) return undefined;
  const m = new RegExp(`^-A ${CHAINS.output} -m comment --comment "?sockmesh-instance=([a-z0-9_-]+)"?\\s*$`, 'm').exec(natSave);
  return m ? m[1] : null;
}

/** 4: iptables (IPv4), 6: ip6tables (IPv6). */
export type Family = 4 | 6;

/** Whether an address or CIDR belongs to a family's rule set ('*' belongs to both). */
export function ofFamily(addr: string, family: Family): boolean {
  return addr === '*' || addr.includes(':') === (family === 6);
}

/** The loopback and passthrough addresses of a family's rules. */
const LOCAL = { 4: { localhost: '127.0.0.1/32', passthrough: '127.0.0.6/32', host: 32 }, 6: { localhost: '::1/128', passthrough: '::6/128', host: 128 } } as const;

/**
 * Rules of our chains, in order (without the chain declarations); `owner` adds the owner mark.
 * The IPv6 rule set (ip6tables) is the same with ::1 and ::6 for 127.0.0.1 and 127.0.0.6, and only
 * the IPv6 addresses and CIDRs of the config (the IPv4 ones only in the IPv4 set).
 */
export function chainRules(cfg: MeshConfig, owner?: string, family: Family = 4): string[] {
  const { sidecar } = cfg;
  const own = (list: string[]) => list.filter((a) => ofFamily(a, family));
  const capture = { ...cfg.capture, excludeOutboundCIDRs: own(cfg.capture.excludeOutboundCIDRs), includeOutboundCIDRs: own(cfg.capture.includeOutboundCIDRs) };
  const { localhost, passthrough, host } = LOCAL[family];
  const services = cfg.services.map((s) => ({ ...s, addresses: own(s.addresses), other: s.addresses.length > 0 && !own(s.addresses).length }))
    .filter((s) => !s.other); // a service whose addresses are all of the other family has no rules here
  const { inbound: IN, redirect: RED, inRedirect: INRED, output: OUT } = CHAINS;
  const r: string[] = [
    ...(owner ? [ownerRule(owner)] : []),
    `-A ${RED} -p tcp -j REDIRECT --to-ports ${sidecar.outboundPort}`,
    `-A ${INRED} -p tcp -j REDIRECT --to-ports ${sidecar.inboundPort}`,
  ];
  // Inbound.
  if (capture.includeInboundPorts === '*') {
    for (const p of capture.excludeInboundPorts) r.push(`-A ${IN} -p tcp --dport ${p} -j RETURN`);
    r.push(`-A ${IN} -p tcp -j ${INRED}`);
  } else {
    for (const p of capture.includeInboundPorts) {
      if (!capture.excludeInboundPorts.includes(p)) r.push(`-A ${IN} -p tcp --dport ${p} -j ${INRED}`);
    }
  }
  // Outbound.
  for (const ports of chunks(capture.excludeOutboundPorts, MULTIPORT_MAX)) {
    r.push(`-A ${OUT} -p tcp -m multiport --dports ${ports.join(',')} -j RETURN`);
  }
  r.push(`-A ${OUT} -o lo -s ${passthrough} -j RETURN`);
  for (const [kind, id] of [['uid', sidecar.uid], ['gid', sidecar.gid]] as const) {
    // The sidecar talking to its own pod's IP is inbound traffic: send it to the inbound listener.
    r.push(`-A ${OUT} -o lo ! -d ${localhost} -p tcp ! --dport ${HBONE_PORT} -m owner --${kind}-owner ${id} -j ${INRED}`);
    r.push(`-A ${OUT} -o lo -m owner ! --${kind}-owner ${id} -j RETURN`);
    r.push(`-A ${OUT} -m owner --${kind}-owner ${id} -j RETURN`);
  }
  r.push(`-A ${OUT} -d ${localhost} -j RETURN`);
  for (const c of capture.excludeOutboundCIDRs) r.push(`-A ${OUT} -d ${c} -j RETURN`);
  for (const p of capture.includeOutboundPorts) r.push(`-A ${OUT} -p tcp --dport ${p} -j ${RED}`);
  if (capture.outbound === 'all') {
    // A listed service whose switch is off is not captured, as in eBPF mode.
    for (const s of services.filter((x) => !x.redirect)) {
      for (const addr of s.addresses.length ? s.addresses : [undefined]) {
        for (const p of s.ports) r.push(`-A ${OUT} ${addr ? `-d ${addr}/${host} ` : ''}-p tcp --dport ${p} -j RETURN`);
      }
    }
    if (capture.includeOutboundCIDRs.includes('*')) {
      r.push(`-A ${OUT} -j ${RED}`);
    } else {
      for (const c of capture.includeOutboundCIDRs) r.push(`-A ${OUT} -d ${c} -j ${RED}`);
      r.push(`-A ${OUT} -j RETURN`);
    }
  } else {
    // Like connect4's lookup: a service's own address:port first (captured, or RETURN when its
    // switch is off, so a wildcard service on the same port does not take it), then the
    // any-address services.
    for (const s of services.filter((x) => x.addresses.length)) {
      for (const addr of s.addresses) {
        for (const p of s.ports) r.push(`-A ${OUT} -d ${addr}/${host} -p tcp --dport ${p} -j ${s.redirect ? RED : 'RETURN'}`);
      }
    }
    for (const s of services.filter((x) => !x.addresses.length && x.redirect)) {
      for (const p of s.ports) r.push(`-A ${OUT} -p tcp --dport ${p} -j ${RED}`);
    }
  }
  return r;
}

const DECLARE = Object.values(CHAINS).map((c) => `:${c} - [0:0]`);

/**
 * Rule lines of an iptables-save dump in the form sockmesh writes them: some kernel/iptables
 * combinations print the implicit `-m tcp` match (seen with Debian 12's 6.1 kernel), others do not.
 */
export function normalizeSave(natSave: string): string[] {
  return natSave.split('\n').map((l) => l.trim().replace(/ -m tcp(?= )/g, ''));
}

/** iptables-save lines of the nat table already present (to keep `up` from duplicating jumps). */
function presentRules(natSave: string): Set<string> {
  return new Set(normalizeSave(natSave).filter((l) => l.startsWith('-A ')));
}

/**
 * iptables-restore --noflush input that makes the nat table hold exactly our rule set: our chains
 * are declared (which empties them) and refilled, jumps are added only where missing and stale
 * jumps (e.g. inbound capture switched off) removed. One COMMIT: applied whole or not at all.
 */
export function upRestore(cfg: MeshConfig, natSave: string, owner?: string, family: Family = 4): string {
  const present = presentRules(natSave);
  const jumps = jumpRules(cfg);
  const allJumps = [`-A PREROUTING -p tcp -j ${CHAINS.inbound}`, `-A OUTPUT -p tcp -j ${CHAINS.output}`];
  const lines = ['*nat', ...DECLARE, ...chainRules(cfg, owner, family)];
  for (const j of allJumps) {
    if (jumps.includes(j) && !present.has(j)) lines.push(j);
    if (!jumps.includes(j) && present.has(j)) lines.push(j.replace(/^-A/, '-D'));
  }
  // A drain chain left by an earlier removal: the new REDIRECT rules keep conntrack on now.
  if (hasDrain(natSave)) lines.push(`:${DRAIN_CHAIN} - [0:0]`, `-X ${DRAIN_CHAIN}`);
  lines.push('COMMIT');
  return `${lines.join('\n')}\n`;
}

/**
 * The chain a removal leaves while connections the rules translated are open: nothing jumps to it,
 * and its one rule needs conntrack, which keeps the namespace translating those connections (see
 * removeRules in apply.ts). Not one of CHAINS: it captures nothing and belongs to no rule set.
 */
export const DRAIN_CHAIN = 'SOCKMESH_DRAIN';

/** Whether an iptables-save dump has the drain chain. */
export function hasDrain(natSave: string): boolean {
  return natSave.includes(`:${DRAIN_CHAIN} `);
}

/** Input that removes the drain chain. */
export function dropDrainRestore(): string {
  return `*nat\n:${DRAIN_CHAIN} - [0:0]\n-X ${DRAIN_CHAIN}\nCOMMIT\n`;
}

/**
 * Input that removes exactly what upRestore added: our jumps, then our chains; with `drainFor`
 * (an instance whose translated connections are still open), the drain chain in the same
 * transaction, so conntrack never stops for them.
 */
export function downRestore(natSave: string, drainFor?: string): string {
  const present = presentRules(natSave);
  const ours = new Set<string>(Object.values(CHAINS));
  const lines = ['*nat'];
  for (const rule of present) {
    const m = /^-A (PREROUTING|OUTPUT) .*-j (\S+)$/.exec(rule);
    if (m && ours.has(m[2])) lines.push(rule.replace(/^-A/, '-D'));
  }
  const declared = Object.values(CHAINS).filter((c) => natSave.includes(`:${c} `));
  for (const c of declared) lines.push(`:${c} - [0:0]`);
  for (const c of declared) lines.push(`-X ${c}`);
  if (drainFor !== undefined) {
    lines.push(`:${DRAIN_CHAIN} - [0:0]`, `-A ${DRAIN_CHAIN} -m conntrack --ctstate DNAT -m comment --comment "sockmesh-drain=${drainFor}" -j RETURN`);
  }
  lines.push('COMMIT');
  return `${lines.join('\n')}\n`;
}

/** Whether any of our chains are present in an iptables-save dump. */
export function hasOurChains(natSave: string): boolean {
  return Object.values(CHAINS).some((c) => natSave.includes(`:${c} `));
}

/** A rule's identity regardless of the order iptables-save prints its matches in: the option
 * groups (`! -d 127.0.0.1/32`, `-m owner`, `--uid-owner 1337`, …) sorted. */
export function canonicalRule(rule: string): string {
  const groups: string[][] = [];
  for (const t of rule.match(/"[^"]*"|\S+/g) ?? []) {
    const last = groups[groups.length - 1];
    const opens = t.startsWith('-') && !(last && last.length === 1 && last[0] === '!');
    if (t === '!' || opens || !last) groups.push([t]);
    else last.push(t);
  }
  const [chain, ...rest] = groups.map((g) => g.join(' '));
  return [chain, ...rest.sort()].join(' ');
}
