// Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016), with weights, for the kernel L4 mode: connect4 picks a table slot (a
// random one, or one hashed from the client) and connects to the endpoint that owns it.
//
// Every endpoint walks its own permutation of the M slots (from two hashes of its address) and
// claims the next free slot on each of its turns; an endpoint of weight w gets w / max-weight
// turns per round, so it ends up owning a share of the table proportional to its weight. Because
// each endpoint's permutation depends on its own address only, removing one endpoint frees the
// slots it owned and moves few others: clients hashed to the remaining endpoints mostly stay.
import { createHash } from 'node:crypto';
import { CAPACITY } from '../config/capacity.js';

/** Table size (SM_MAGLEV_M): a prime, so every skip value walks all slots. */
export const MAGLEV_M = CAPACITY.maglevSlots;

export interface WeightedEndpoint {
  /** What identifies the endpoint across edits (e.g. "10.0.0.11:9080"): its permutation depends on it alone. */
  key: string;
  /** Relative share, ≥ 1. */
  weight: number;
}

/** offset and skip of an endpoint's permutation of 0..m-1. */
function permutation(key: string, m: number): { offset: number; skip: number } {
  const h = createHash('sha256').update(key).digest();
  return { offset: h.readUInt32LE(0) % m, skip: (h.readUInt32LE(4) % (m - 1)) + 1 };
}

/**
 * The table: slot -> index into `endpoints`; all -1 when there are none. Deterministic for a
 * given list (order of equal keys aside), so both slots of the two-slot apply compile alike.
 */
export function maglevTable(endpoints: readonly WeightedEndpoint[], m = MAGLEV_M): Int32Array {
  const table = new Int32Array(m).fill(-1);
  if (!endpoints.length) return table;
  const perms = endpoints.map((e) => permutation(e.key, m));
  const next = new Array<number>(endpoints.length).fill(0);
  const maxWeight = Math.max(...endpoints.map((e) => e.weight));
  const credit = new Array<number>(endpoints.length).fill(0);
  let filled = 0;
  while (filled < m) {
    for (let i = 0; i < endpoints.length && filled < m; i++) {
      credit[i] += endpoints[i].weight / maxWeight;
      if (credit[i] < 1) continue;
      credit[i] -= 1;
      const { offset, skip } = perms[i];
      let slot = (offset + next[i] * skip) % m;
      while (table[slot] >= 0) {
        next[i] += 1;
        slot = (offset + next[i] * skip) % m;
      }
      table[slot] = i;
      next[i] += 1;
      filled += 1;
    }
  }
  return table;
}
