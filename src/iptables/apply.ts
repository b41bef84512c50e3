// Applying and removing the rule set with iptables-save/iptables-restore inside one network
// namespace (`ip netns exec NAME`, or `nsenter --net=PATH` for a path such as /proc/PID/ns/net),
// or the current one when none is named.
import { Codes, SockmeshError, UserError } from '../errors.js';
import type { MeshConfig } from '../config/model.js';
import { execTool } from '../util/exec.js';
import { CHAINS, canonicalRule, chainRules, downRestore, jumpRules, normalizeSave, ruleOwner, upRestore } from './rules.js';

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

export function natSave(netns: string | undefined): Promise<string> {
  return run(netns, 'iptables-save', ['-t', 'nat']);
}

/** Feeds one iptables-restore transaction (one COMMIT): applied whole or not at all. */
export async function restore(netns: string | undefined, input: string): Promise<void> {
  await run(netns, 'iptables-restore', ['--noflush'], input);
}

function where(netns: string | undefined): string {
  return netns ? `network namespace ${netns}` : 'this network namespace';
}

/**
 * Applies the rule set of `owner` atomically; a second call with the same config changes nothing.
 * The namespace's nat table holds one sockmesh rule set: another instance's is never overwritten.
 */
export async function applyRules(netns: string | undefined, cfg: MeshConfig, owner: string): Promise<string> {
  const save = await natSave(netns);
  const current = ruleOwner(save);
  if (current && current !== owner) {
    throw new UserError(Codes.INSTANCE_CONFLICT, `${where(netns)} already holds the iptables rules of sockmesh instance "${current}"; one instance per namespace in iptables mode (sockmesh down --instance ${current} first, or use that instance)`);
  }
  const input = upRestore(cfg, save, owner);
  await restore(netns, input);
  return input;
}

/**
 * Removes exactly our jumps and chains when they belong to `owner` (or carry no owner mark);
 * 'absent' when there was nothing, 'foreign' when they belong to another instance (left alone).
 */
export async function removeRules(netns: string | undefined, owner: string): Promise<'removed' | 'absent' | 'foreign'> {
  const save = await natSave(netns);
  const current = ruleOwner(save);
  if (current === undefined) return 'absent';
  if (current !== null && current !== owner) return 'foreign';
  await restore(netns, downRestore(save));
  await dropEmptyNatTable(netns);
  return 'removed';
}

/** iptables-save lines of a nat table that holds nothing: its built-in chains, empty, accepting. */
const EMPTY_NAT = /^(\*nat|COMMIT|:(PREROUTING|INPUT|OUTPUT|POSTROUTING) ACCEPT \[\d+:\d+\])$/;

/**
 * A nat table left with nothing in it once our chains are gone is deleted, where the nf_tables
 * backend allows it (nft): while a nat table exists, the namespace tracks every connection
 * (conntrack), which eBPF mode, or no mesh at all, never asked for. A table with anything in it is
 * left alone, as is the legacy backend's (it cannot be deleted). Returns whether it was deleted.
 */
export async function dropEmptyNatTable(netns: string | undefined): Promise<boolean> {
  const lines = (await natSave(netns)).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (!lines.every((l) => EMPTY_NAT.test(l))) return false;
  try {
    if (!/nf_tables/.test(await run(netns, 'iptables', ['-V']))) return false;
    await run(netns, 'nft', ['delete', 'table', 'ip', 'nat']);
    return true;
  } catch {
    return false; // no nft tool: the empty table stays, as it always did
  }
}

/** Packet counts of the REDIRECT rules: NAT rules see the first packet of each connection only. */
export async function redirectCounts(netns: string | undefined): Promise<{ outbound: number; inbound: number }> {
  const count = async (chain: string) => {
    const out = await run(netns, 'iptables', ['-t', 'nat', '-L', chain, '-n', '-v', '-x']);
    const line = out.split('\n').find((l) => /^\s*\d+\s+\d+\s+REDIRECT\b/.test(l));
    return line ? Number(line.trim().split(/\s+/)[0]) : 0;
  };
  return { outbound: await count(CHAINS.redirect), inbound: await count(CHAINS.inRedirect) };
}

/**
 * How the live rule set of `owner` in a namespace compares with what `cfg` generates: the rules
 * of our chains and our jumps, as iptables-save prints them (normalised) against ours.
 */
export async function compareRules(netns: string | undefined, cfg: MeshConfig, owner: string): Promise<{ rules: number; missing: string[]; extra: string[] }> {
  const save = await natSave(netns);
  const ours = new Set<string>(Object.values(CHAINS));
  const mine = (l: string) => {
    const m = /^-A (\S+) .*?(?:-j (\S+))?$/.exec(l);
    return m !== null && (ours.has(m[1]) || (m[2] !== undefined && ours.has(m[2])));
  };
  const live = normalizeSave(save).filter((l) => l.startsWith('-A ') && mine(l));
  const want = [...chainRules(cfg, owner), ...jumpRules(cfg)];
  const liveKeys = new Set(live.map(canonicalRule));
  const wantKeys = new Set(want.map(canonicalRule));
  return { rules: want.length, missing: want.filter((l) => !liveKeys.has(canonicalRule(l))), extra: live.filter((l) => !wantKeys.has(canonicalRule(l))) };
}
