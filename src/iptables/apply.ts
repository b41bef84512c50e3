// Applying and removing the rule set with iptables-save/iptables-restore inside one network
// namespace (`ip netns exec NAME`, or `nsenter --net=PATH` for a path such as /proc/PID/ns/net),
// or the current one when none is named. IPv4 (iptables) and IPv6 (ip6tables) alike, as
// istio-iptables does; a namespace without ip6tables' nat table gets the IPv4 set only, unless the
// config names IPv6 addresses (then it is refused before anything changes).
import { Codes, SockmeshError, UserError } from '../errors.js';
import type { MeshConfig } from '../config/model.js';
import { execTool } from '../util/exec.js';
import { CHAINS, DRAIN_CHAIN, canonicalRule, chainRules, downRestore, dropDrainRestore, hasDrain, jumpRules, normalizeSave, ruleOwner, upRestore, type Family } from './rules.js';

const TOOL = { 4: 'iptables', 6: 'ip6tables' } as const;

function inNetns(netns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  if (!netns) return [cmd, args];
  return netns.startsWith('/') ? ['nsenter', [`--net=${netns}`, cmd, ...args]] : ['ip', ['netns', 'exec', netns, cmd, ...args]];
}

async function run(netns: string | undefined, cmd: string, args: string[], input?: string): Promise<string> {
  const [c, a] = inNetns(netns, cmd, args);
  let r;
  try {
    r = await execTool(c, a, { input });
  } catch (cause) {
    throw new SockmeshError(Codes.SYSCALL, `cannot run ${cmd}: install iptables (Debian: apt-get install iptables)`, { cause });
  }
  if (r.code !== 0) {
    const where = netns ? ` in network namespace ${netns}` : '';
    if (/Cannot open network namespace|nsenter: cannot open/.test(r.stderr)) throw new UserError(Codes.USAGE, `no network namespace "${netns}"`);
    throw new SockmeshError(Codes.SYSCALL, `${cmd}${where} failed: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

export function natSave(netns: string | undefined, family: Family = 4): Promise<string> {
  return run(netns, `${TOOL[family]}-save`, ['-t', 'nat']);
}

/** Feeds one iptables-restore transaction (one COMMIT): applied whole or not at all. */
export async function restore(netns: string | undefined, input: string, family: Family = 4): Promise<void> {
  await run(netns, `${TOOL[family]}-restore`, ['--noflush'], input);
}

/** Whether a config names IPv6 addresses or CIDRs (then the IPv6 rule set is required). */
function namesIpv6(cfg: MeshConfig): boolean {
  return [...cfg.capture.excludeOutboundCIDRs, ...cfg.capture.includeOutboundCIDRs, ...cfg.services.flatMap((s) => s.addresses)].some((a) => a.includes(':'));
}

/** The families whose rule sets a namespace takes: IPv4, and IPv6 where ip6tables' nat table works. */
async function families(netns: string | undefined, cfg?: MeshConfig): Promise<Family[]> {
  try {
    await natSave(netns, 6);
    return [4, 6];
  } catch (err) {
    if (cfg && namesIpv6(cfg)) {
      throw new SockmeshError(Codes.SYSCALL, `the config names IPv6 addresses, but ip6tables' nat table does not work in ${where(netns)}: ${(err as Error).message}`);
    }
    return [4];
  }
}

function where(netns: string | undefined): string {
  return netns ? `network namespace ${netns}` : 'this network namespace';
}

/**
 * Applies the rule set of `owner` atomically; a second call with the same config changes nothing.
 * The namespace's nat table holds one sockmesh rule set: another instance's is never overwritten.
 */
export async function applyRules(netns: string | undefined, cfg: MeshConfig, owner: string): Promise<string> {
  const inputs: Array<[Family, string]> = [];
  // Every family checked before any is written: nothing half-applied.
  for (const family of await families(netns, cfg)) {
    const save = await natSave(netns, family);
    const current = ruleOwner(save);
    if (current && current !== owner) {
      throw new UserError(Codes.INSTANCE_CONFLICT, `${where(netns)} already holds the ${TOOL[family]} rules of sockmesh instance "${current}"; one instance per namespace in iptables mode (sockmesh down --instance ${current} first, or use that instance)`);
    }
    inputs.push([family, upRestore(cfg, save, owner, family)]);
  }
  for (const [family, input] of inputs) await restore(netns, input, family);
  return inputs.map(([, input]) => input).join('');
}

/** What removing a rule set left behind that the caller should report. */
export interface RemoveNotes {
  /** Families whose drain chain stays: open connections the rules translated (-1: unknown). */
  draining: Array<{ family: Family; connections: number }>;
}

/**
 * Removes exactly our jumps and chains when they belong to `owner` (or carry no owner mark);
 * 'absent' when there was nothing, 'foreign' when they belong to another instance (left alone).
 *
 * Connections the rules translated keep working. Their NAT bindings live in conntrack, but a
 * namespace tracks connections only while some nat rule needs conntrack: once the last REDIRECT
 * rule goes, packets of those connections are no longer translated and their peer resets them
 * (measured on 6.18: a stream through the sidecar got ECONNRESET at once). So while any is open,
 * the same transaction that removes our rules leaves the drain chain (an unused chain with one
 * conntrack rule, nothing jumps to it): it captures nothing and keeps those connections working.
 * It goes at the next removal or apply in the namespace once they have closed (see pruneDrain).
 */
export async function removeRules(netns: string | undefined, owner: string, notes?: RemoveNotes): Promise<'removed' | 'absent' | 'foreign'> {
  const outcomes: Array<'removed' | 'absent' | 'foreign'> = [];
  for (const family of await families(netns)) {
    const save = await natSave(netns, family);
    const current = ruleOwner(save);
    if (current === undefined) {
      await pruneDrain(netns, family, save, notes);
      outcomes.push('absent');
    } else if (current !== null && current !== owner) outcomes.push('foreign');
    else {
      const open = await translatedConnections(netns, family);
      await restore(netns, downRestore(save, open !== 0 ? owner : undefined), family);
      if (open !== 0) notes?.draining.push({ family, connections: open ?? -1 });
      else await dropEmptyNatTable(netns, family);
      outcomes.push('removed');
    }
  }
  return outcomes.includes('removed') ? 'removed' : outcomes.includes('foreign') ? 'foreign' : 'absent';
}

/** Removes a drain chain whose connections have closed (then the nat table, if it is empty). */
export async function pruneDrain(netns: string | undefined, family: Family, save: string, notes?: RemoveNotes): Promise<void> {
  if (!hasDrain(save)) return;
  const open = await translatedConnections(netns, family);
  if (open !== 0) {
    notes?.draining.push({ family, connections: open ?? -1 });
    return;
  }
  await restore(netns, dropDrainRestore(), family);
  await dropEmptyNatTable(netns, family);
}

/** What removing a rule set says about a drain chain it left (see removeRules). */
export function drainNote(where: string, draining: RemoveNotes['draining']): string {
  const n = draining.reduce((a, k) => a + Math.max(0, k.connections), 0);
  const unknown = draining.some((k) => k.connections < 0);
  const count = unknown ? 'connections the rules translated may be open (conntrack could not be read)'
    : `${n} connection${n === 1 ? '' : 's'} the rules translated ${n === 1 ? 'is' : 'are'} open`;
  const tools = draining.map((k) => (k.family === 4 ? 'iptables' : 'ip6tables'));
  return `${where}: ${count}; they keep working, so connection tracking stays on there (chain ${DRAIN_CHAIN}: it captures nothing; `
    + 'removing it now would reset them). The next sockmesh up or down in that namespace removes it once they have closed; by hand: '
    + tools.map((t) => `${t} -t nat -F ${DRAIN_CHAIN}; ${t} -t nat -X ${DRAIN_CHAIN}`).join('; ');
}

/** iptables-save lines of a nat table that holds nothing: its built-in chains, empty, accepting. */
const EMPTY_NAT = /^(\*nat|COMMIT|:(PREROUTING|INPUT|OUTPUT|POSTROUTING) ACCEPT \[\d+:\d+\])$/;

/** conntrack states of a connection that is still open (TIME_WAIT and CLOSE are over). */
const OPEN_STATES = new Set(['SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'SYN_SENT2']);

/**
 * Open TCP connections of a family whose addresses a nat rule rewrote (a REDIRECT: the reply
 * tuple is not the original one reversed), in the text of /proc/net/nf_conntrack.
 */
export function countTranslated(conntrack: string, family: Family): number {
  let n = 0;
  for (const line of conntrack.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] !== (family === 4 ? 'ipv4' : 'ipv6') || f[2] !== 'tcp' || !OPEN_STATES.has(f[5])) continue;
    const kv = f.filter((x) => /^(src|dst|sport|dport)=/.test(x)).map((x) => x.split('=')[1]);
    if (kv.length < 8) continue;
    const [os, od, osp, odp, rs, rd, rsp, rdp] = kv;
    if (rs !== od || rd !== os || rsp !== odp || rdp !== osp) n++;
  }
  return n;
}

/** Open connections of the namespace that a nat rule translated; undefined when conntrack cannot be read. */
async function translatedConnections(netns: string | undefined, family: Family): Promise<number | undefined> {
  try {
    return countTranslated(await run(netns, 'cat', ['/proc/net/nf_conntrack']), family);
  } catch {
    return undefined;
  }
}

/**
 * A nat table left with nothing in it once our chains are gone is deleted, where the nf_tables
 * backend allows it (nft): while a nat table exists, the namespace tracks every connection
 * (conntrack), which eBPF mode, or no mesh at all, never asked for. Called only once no connection
 * the rules translated is open. A table with anything in it is left alone, as is the legacy
 * backend's (it cannot be deleted). Returns whether it was deleted.
 */
export async function dropEmptyNatTable(netns: string | undefined, family: Family = 4): Promise<boolean> {
  const lines = (await natSave(netns, family)).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (!lines.every((l) => EMPTY_NAT.test(l))) return false;
  try {
    if (!/nf_tables/.test(await run(netns, TOOL[family], ['-V']))) return false;
    await run(netns, 'nft', ['delete', 'table', family === 4 ? 'ip' : 'ip6', 'nat']);
    return true;
  } catch {
    return false; // no nft tool: the empty table stays, as it always did
  }
}

/** Packet counts of the REDIRECT rules: NAT rules see the first packet of each connection only. */
export async function redirectCounts(netns: string | undefined): Promise<{ outbound: number; inbound: number }> {
  const count = async (chain: string, family: Family) => {
    const out = await run(netns, TOOL[family], ['-t', 'nat', '-L', chain, '-n', '-v', '-x']).catch(() => '');
    const line = out.split('\n').find((l) => /^\s*\d+\s+\d+\s+REDIRECT\b/.test(l));
    return line ? Number(line.trim().split(/\s+/)[0]) : 0;
  };
  const total = { outbound: 0, inbound: 0 };
  for (const family of await families(netns)) {
    total.outbound += await count(CHAINS.redirect, family);
    total.inbound += await count(CHAINS.inRedirect, family);
  }
  return total;
}

/**
 * How the live rule set of `owner` in a namespace compares with what `cfg` generates: the rules
 * of our chains and our jumps, as iptables-save prints them (normalised) against ours.
 */
export async function compareRules(netns: string | undefined, cfg: MeshConfig, owner: string): Promise<{ rules: number; missing: string[]; extra: string[] }> {
  const ours = new Set<string>(Object.values(CHAINS));
  const mine = (l: string) => {
    const m = /^-A (\S+) .*?(?:-j (\S+))?$/.exec(l);
    return m !== null && (ours.has(m[1]) || (m[2] !== undefined && ours.has(m[2])));
  };
  const out = { rules: 0, missing: [] as string[], extra: [] as string[] };
  for (const family of await families(netns)) {
    const live = normalizeSave(await natSave(netns, family)).filter((l) => l.startsWith('-A ') && mine(l));
    const want = [...chainRules(cfg, owner, family), ...jumpRules(cfg)];
    const liveKeys = new Set(live.map(canonicalRule));
    const wantKeys = new Set(want.map(canonicalRule));
    const tag = (l: string) => (family === 6 ? `(ip6tables) ${l}` : l);
    out.rules += want.length;
    out.missing.push(...want.filter((l) => !liveKeys.has(canonicalRule(l))).map(tag));
    out.extra.push(...live.filter((l) => !wantKeys.has(canonicalRule(l))).map(tag));
  }
  return out;
}
