// Applying and removing the rule set with iptables-save/iptables-restore inside one network
// namespace (`ip netns exec`), or the current one when none is named.
import { Codes, SockmeshError, UserError } from '../errors.js';
import type { MeshConfig } from '../config/model.js';
import { execTool } from '../util/exec.js';
import { CHAINS, downRestore, hasOurChains, upRestore } from './rules.js';

function inNetns(netns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args];
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
    if (/Cannot open network namespace/.test(r.stderr)) throw new UserError(Codes.USAGE, `no network namespace "${netns}"`);
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

/** Applies the rule set atomically; a second call with the same config changes nothing. */
export async function applyRules(netns: string | undefined, cfg: MeshConfig): Promise<string> {
  const input = upRestore(cfg, await natSave(netns));
  await restore(netns, input);
  return input;
}

/** Removes exactly our jumps and chains; false when there was nothing to remove. */
export async function removeRules(netns: string | undefined): Promise<boolean> {
  const save = await natSave(netns);
  if (!hasOurChains(save)) return false;
  await restore(netns, downRestore(save));
  return true;
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
