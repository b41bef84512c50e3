// Typed access to one pinned BPF map, built on a key and a value codec. Sizes are read from the
// map and checked against the codecs, so a stale object or codec fails loudly at open time.
import { readFileSync } from 'node:fs';
import * as bpf from '../../native/libbpf.js';
import { Codes, SockmeshError, SyscallError } from '../errors.js';
import type { Codec } from './codec.js';

export const MAP_TYPES = {
  HASH: 1, ARRAY: 2, PERCPU_HASH: 5, PERCPU_ARRAY: 6, LPM_TRIE: 11, SOCKMAP: 15, SOCKHASH: 18, LRU_HASH: 9,
} as const;

/** Map types whose batch lookup/update sockmesh uses (LPM tries and sockhashes have none). */
const BATCH_TYPES = new Set<number>([MAP_TYPES.HASH, MAP_TYPES.ARRAY, MAP_TYPES.LRU_HASH]);

export class BpfMap<K, V> {
  readonly info: bpf.MapInfo;
  private fd: number;

  private constructor(
    readonly path: string,
    fd: number,
    readonly key: Codec<K>,
    readonly value: Codec<V>,
    valueSize: number,
  ) {
    this.fd = fd;
    this.info = bpf.mapInfo(fd, path);
    if (this.info.keySize !== key.size || this.info.valueSize !== valueSize) {
      bpf.close(fd);
      throw new SockmeshError(
        Codes.MAP,
        `map ${path} has key/value sizes ${this.info.keySize}/${this.info.valueSize}, expected ${key.size}/${valueSize}: the pinned object and this agent disagree`,
      );
    }
  }

  static open<K, V>(path: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    return new BpfMap(path, bpf.objGet(path), key, value, value.size);
  }

  get(k: K): V | undefined {
    const v = Buffer.alloc(this.value.size);
    return bpf.mapLookup(this.fd, this.key.encode(k), v, this.path) ? this.value.decode(v) : undefined;
  }

  set(k: K, v: V, flags = bpf.UpdateFlags.ANY): void {
    this.setRaw(this.key.encode(k), this.value.encode(v), flags);
  }

  delete(k: K): boolean {
    return this.deleteRaw(this.key.encode(k));
  }

  setRaw(k: Buffer, v: Buffer, flags = bpf.UpdateFlags.ANY): void {
    bpf.mapUpdate(this.fd, k, v, flags, this.path);
  }

  /** Deletes an entry; false when there was none. */
  deleteRaw(k: Buffer): boolean {
    try {
      return bpf.mapDelete(this.fd, k, this.path);
    } catch (e) {
      // A sockmap answers an empty slot with EINVAL, not ENOENT (__sock_map_delete): absent.
      if (this.info.type === MAP_TYPES.SOCKMAP && e instanceof SyscallError && e.errno === 22) return false;
      throw e;
    }
  }

  /** Every entry as raw key/value bytes: batched where the map type has batch ops, else a walk. */
  rawEntries(): Array<{ key: Buffer; value: Buffer }> {
    if (BATCH_TYPES.has(this.info.type)) {
      try {
        return this.batchEntries();
      } catch (e) {
        // Kernels without batch support for this type answer EINVAL/ENOTSUPP: walk instead.
        if (!(e instanceof SyscallError) || ![22, 95, 524].includes(e.errno)) throw e;
      }
    }
    return this.walkEntries();
  }

  private batchEntries(): Array<{ key: Buffer; value: Buffer }> {
    const out: Array<{ key: Buffer; value: Buffer }> = [];
    const max = Math.max(1, Math.min(this.info.maxEntries, 4096));
    const keys = Buffer.alloc(this.key.size * max);
    const values = Buffer.alloc(this.value.size * max);
    // Hash batch cursors are 4 bytes; array cursors are keys: allocate enough for either.
    let inBatch: Buffer | null = null;
    for (;;) {
      const outBatch = Buffer.alloc(Math.max(8, this.key.size));
      const { count, done } = bpf.mapLookupBatch(this.fd, inBatch, outBatch, keys, values, max, this.path);
      for (let i = 0; i < count; i++) {
        out.push({
          key: Buffer.from(keys.subarray(i * this.key.size, (i + 1) * this.key.size)),
          value: Buffer.from(values.subarray(i * this.value.size, (i + 1) * this.value.size)),
        });
      }
      if (done) return out;
      inBatch = outBatch;
    }
  }

  /** Writes many entries: one BPF_MAP_UPDATE_BATCH where the type has it, else one by one. */
  setManyRaw(entries: Array<{ key: Buffer; value: Buffer }>): void {
    if (!entries.length) return;
    if (BATCH_TYPES.has(this.info.type) && entries.length > 1) {
      try {
        bpf.mapUpdateBatch(this.fd, Buffer.concat(entries.map((e) => e.key)), Buffer.concat(entries.map((e) => e.value)), entries.length, this.path);
        return;
      } catch (e) {
        if (!(e instanceof SyscallError) || ![22, 95, 524].includes(e.errno)) throw e;
      }
    }
    for (const e of entries) this.setRaw(e.key, e.value);
  }

  private walkEntries(): Array<{ key: Buffer; value: Buffer }> {
    const out: Array<{ key: Buffer; value: Buffer }> = [];
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.key.size);
      if (!bpf.mapNextKey(this.fd, prev, next, this.path)) break;
      const value = Buffer.alloc(this.value.size);
      // An entry may vanish between the two calls (LRU eviction, a closing socket): skip it.
      if (bpf.mapLookup(this.fd, next, value, this.path)) out.push({ key: next, value });
      prev = next;
    }
    return out;
  }

  entries(): Array<[K, V]> {
    return this.rawEntries().map(({ key, value }) => [this.key.decode(key), this.value.decode(value)]);
  }

  close(): void {
    if (this.fd >= 0) bpf.close(this.fd);
    this.fd = -1;
  }
}

/** Number of possible CPUs: the stride of per-CPU map values. */
export function possibleCpus(): number {
  const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
  let n = 0;
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number);
    n += (b ?? a) - a + 1;
  }
  return n;
}

/** A per-CPU array of __u64 counters, read as sums over CPUs. */
export class PerCpuCounters {
  private readonly fd: number;
  readonly info: bpf.MapInfo;
  private readonly cpus = possibleCpus();

  constructor(readonly path: string) {
    this.fd = bpf.objGet(path);
    this.info = bpf.mapInfo(this.fd, path);
    if (this.info.valueSize !== 8 || this.info.type !== MAP_TYPES.PERCPU_ARRAY) {
      bpf.close(this.fd);
      throw new SockmeshError(Codes.MAP, `map ${path} is not a per-CPU array of __u64`);
    }
  }

  /** Sums of every counter, by index, up to the map's own max_entries (batched reads). */
  sums(): bigint[] {
    const n = this.info.maxEntries;
    const out: bigint[] = new Array(n).fill(0n);
    const chunk = Math.min(n, 4096);
    const keys = Buffer.alloc(4 * chunk);
    const values = Buffer.alloc(8 * this.cpus * chunk);
    let inBatch: Buffer | null = null;
    for (;;) {
      const outBatch = Buffer.alloc(4);
      const { count, done } = bpf.mapLookupBatch(this.fd, inBatch, outBatch, keys, values, chunk, this.path);
      for (let i = 0; i < count; i++) {
        const idx = keys.readUInt32LE(i * 4);
        let sum = 0n;
        for (let c = 0; c < this.cpus; c++) sum += values.readBigUInt64LE((i * this.cpus + c) * 8);
        out[idx] = sum;
      }
      if (done || count === 0) return out;
      inBatch = outBatch;
    }
  }

  close(): void {
    bpf.close(this.fd);
  }
}

/** Every entry of a per-CPU hash of __u64 counters, summed over CPUs (key bytes -> sum). */
export function perCpuHashSums(path: string): Array<{ key: Buffer; sum: bigint }> {
  const fd = bpf.objGet(path);
  try {
    const info = bpf.mapInfo(fd, path);
    if (info.valueSize !== 8 || info.type !== MAP_TYPES.PERCPU_HASH) throw new SockmeshError(Codes.MAP, `map ${path} is not a per-CPU hash of __u64`);
    const cpus = possibleCpus();
    const out: Array<{ key: Buffer; sum: bigint }> = [];
    const value = Buffer.alloc(8 * cpus);
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(info.keySize);
      if (!bpf.mapNextKey(fd, prev, next, path)) return out;
      if (bpf.mapLookup(fd, next, value, path)) {
        let sum = 0n;
        for (let c = 0; c < cpus; c++) sum += value.readBigUInt64LE(c * 8);
        out.push({ key: next, sum });
      }
      prev = next;
    }
  } finally {
    bpf.close(fd);
  }
}
