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

  /** How many entries the map holds, by walking its keys (no values read). */
  countKeys(): number {
    let n = 0;
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.key.size);
      if (!bpf.mapNextKey(this.fd, prev, next, this.path)) return n;
      n++;
      prev = next;
    }
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

/** Sums over CPUs of per-CPU __u64 values packed at `base` (as numbers: counters stay far below
 * 2^53; BigInt arithmetic made a scrape of 100,000 counters cost ~200 ms). */
function sumCpus(words: Uint32Array, base: number, cpus: number): number {
  let sum = 0;
  for (let c = 0; c < cpus; c++) sum += words[base + 2 * c] + words[base + 2 * c + 1] * 4294967296;
  return sum;
}

/** A buffer's bytes as 32-bit words (Buffer.alloc gives each buffer its own, aligned memory). */
function words(b: Buffer): Uint32Array {
  return new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
}

/**
 * A per-CPU array whose elements are blocks of `stride` __u64 counters (one block per pod or
 * service id), read as sums over CPUs.
 */
export class PerCpuCounters {
  private readonly fd: number;
  readonly info: bpf.MapInfo;
  private readonly cpus = possibleCpus();

  constructor(readonly path: string, readonly stride: number) {
    this.fd = bpf.objGet(path);
    this.info = bpf.mapInfo(this.fd, path);
    if (this.info.valueSize !== 8 * stride || this.info.type !== MAP_TYPES.PERCPU_ARRAY) {
      bpf.close(this.fd);
      throw new SockmeshError(Codes.MAP, `map ${path} is not a per-CPU array of ${stride} __u64 counters per element (value size ${this.info.valueSize}): the pinned object and this agent disagree`);
    }
  }

  /**
   * Sums of the counters of the first `blocks` elements (default: every one), flat: element i's
   * counter k at i * stride + k. Batched reads of just those: a node uses a few of its 16,384
   * service ids.
   */
  sums(blocks = this.info.maxEntries): Float64Array {
    const n = Math.max(0, Math.min(blocks, this.info.maxEntries));
    const { stride, cpus } = this;
    const out = new Float64Array(n * stride);
    const chunk = Math.max(1, Math.min(n, 1024));
    const keys = Buffer.alloc(4 * chunk);
    const values = Buffer.alloc(8 * stride * cpus * chunk);
    const w = words(values);
    let inBatch: Buffer | null = null;
    for (let read = 0; read < n;) {
      const outBatch = Buffer.alloc(4);
      const { count: got, done } = bpf.mapLookupBatch(this.fd, inBatch, outBatch, keys, values, Math.min(chunk, n - read), this.path);
      for (let i = 0; i < got; i++) {
        const idx = keys.readUInt32LE(i * 4);
        if (idx >= n) continue;
        // Element i holds, per CPU, its `stride` counters: CPU c's counter k at ((i*cpus + c)*stride + k) u64s.
        for (let k = 0; k < stride; k++) {
          let sum = 0;
          for (let c = 0; c < cpus; c++) {
            const at = ((i * cpus + c) * stride + k) * 2;
            sum += w[at] + w[at + 1] * 4294967296;
          }
          out[idx * stride + k] = sum;
        }
      }
      read += got;
      if (done || got === 0) break;
      inBatch = outBatch;
    }
    return out;
  }

  close(): void {
    bpf.close(this.fd);
  }
}

/** Every entry of a per-CPU hash of __u64 counters, summed over CPUs (key bytes -> sum): batched
 * reads where the kernel has them (5.6+), a walk otherwise. */
export function perCpuHashSums(path: string): Array<{ key: Buffer; sum: number }> {
  const fd = bpf.objGet(path);
  try {
    const info = bpf.mapInfo(fd, path);
    if (info.valueSize !== 8 || info.type !== MAP_TYPES.PERCPU_HASH) throw new SockmeshError(Codes.MAP, `map ${path} is not a per-CPU hash of __u64`);
    const cpus = possibleCpus();
    try {
      return perCpuHashBatch(fd, info, cpus, path);
    } catch (e) {
      if (!(e instanceof SyscallError) || ![22, 95, 524].includes(e.errno)) throw e;
    }
    const out: Array<{ key: Buffer; sum: number }> = [];
    const value = Buffer.alloc(8 * cpus);
    const w = words(value);
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(info.keySize);
      if (!bpf.mapNextKey(fd, prev, next, path)) return out;
      if (bpf.mapLookup(fd, next, value, path)) out.push({ key: next, sum: sumCpus(w, 0, cpus) });
      prev = next;
    }
  } finally {
    bpf.close(fd);
  }
}

function perCpuHashBatch(fd: number, info: bpf.MapInfo, cpus: number, path: string): Array<{ key: Buffer; sum: number }> {
  const out: Array<{ key: Buffer; sum: number }> = [];
  const max = Math.max(1, Math.min(info.maxEntries, 1024));
  const keys = Buffer.alloc(info.keySize * max);
  const values = Buffer.alloc(8 * cpus * max);
  const w = words(values);
  let inBatch: Buffer | null = null;
  for (;;) {
    const outBatch = Buffer.alloc(8);
    const { count, done } = bpf.mapLookupBatch(fd, inBatch, outBatch, keys, values, max, path);
    for (let i = 0; i < count; i++) out.push({ key: Buffer.from(keys.subarray(i * info.keySize, (i + 1) * info.keySize)), sum: sumCpus(w, i * cpus * 2, cpus) });
    if (done || count === 0) return out;
    inBatch = outBatch;
  }
}
