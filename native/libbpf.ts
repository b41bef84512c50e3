// Thin FFI layer over libbpf's low-level map API (koffi). No logic: every call checks its result
// and throws SyscallError. libbpf 1.x returns -errno from these calls.
import koffi from 'koffi';
import { SyscallError } from '../src/errors.js';

const lib = koffi.load('libbpf.so.1');

const fns = {
  objGet: lib.func('int bpf_obj_get(const char *pathname)'),
  update: lib.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  lookup: lib.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
  remove: lib.func('int bpf_map_delete_elem(int fd, const void *key)'),
  nextKey: lib.func('int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
  lookupBatch: lib.func(
    'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, const void *opts)',
  ),
  updateBatch: lib.func(
    'int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, const void *opts)',
  ),
  infoByFd: lib.func('int bpf_obj_get_info_by_fd(int fd, void *info, void *info_len)'),
  mapCreate: lib.func(
    'int bpf_map_create(int map_type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const void *opts)',
  ),
};

const libc = koffi.load('libc.so.6');
const closeFd = libc.func('int close(int fd)');

/** BPF_ANY / BPF_NOEXIST / BPF_EXIST. */
export const UpdateFlags = { ANY: 0n, NOEXIST: 1n, EXIST: 2n } as const;

export const ENOENT = 2;

function check(rc: number, call: string, what: string): number {
  if (rc < 0) throw new SyscallError(call, -rc, what);
  return rc;
}

export function objGet(path: string): number {
  return check(fns.objGet(path), 'bpf_obj_get', path);
}

export function close(fd: number): void {
  closeFd(fd);
}

export function mapUpdate(fd: number, key: Buffer, value: Buffer, flags: bigint, what: string): void {
  check(fns.update(fd, key, value, flags), 'bpf_map_update_elem', what);
}

/** Fills `value`; returns false when the key is absent. */
export function mapLookup(fd: number, key: Buffer, value: Buffer, what: string): boolean {
  const rc = fns.lookup(fd, key, value);
  if (rc === -ENOENT) return false;
  check(rc, 'bpf_map_lookup_elem', what);
  return true;
}

/** Returns false when the key was absent. */
export function mapDelete(fd: number, key: Buffer, what: string): boolean {
  const rc = fns.remove(fd, key);
  if (rc === -ENOENT) return false;
  check(rc, 'bpf_map_delete_elem', what);
  return true;
}

/** Writes the key after `key` (the first key when `key` is null); false at the end. */
export function mapNextKey(fd: number, key: Buffer | null, next: Buffer, what: string): boolean {
  const rc = fns.nextKey(fd, key, next);
  if (rc === -ENOENT) return false;
  check(rc, 'bpf_map_get_next_key', what);
  return true;
}

/** struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; } */
function batchOpts(): Buffer {
  const opts = Buffer.alloc(24);
  opts.writeBigUInt64LE(24n, 0);
  return opts;
}

/**
 * One BPF_MAP_LOOKUP_BATCH step: reads up to `max` entries after the cursor in `inBatch`
 * (null = from the start) into keys/values and the new cursor into `outBatch`. Returns the number
 * read and whether the map is exhausted. Throws SyscallError (EINVAL/ENOTSUPP where the map type
 * has no batch support).
 */
export function mapLookupBatch(
  fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, max: number, what: string,
): { count: number; done: boolean } {
  const count = Buffer.alloc(4);
  count.writeUInt32LE(max);
  const rc = fns.lookupBatch(fd, inBatch, outBatch, keys, values, count, batchOpts());
  if (rc === -ENOENT) return { count: count.readUInt32LE(), done: true };
  check(rc, 'bpf_map_lookup_batch', what);
  return { count: count.readUInt32LE(), done: false };
}

/** BPF_MAP_UPDATE_BATCH of `n` packed keys and values. */
export function mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, n: number, what: string): void {
  const count = Buffer.alloc(4);
  count.writeUInt32LE(n);
  check(fns.updateBatch(fd, keys, values, count, batchOpts()), 'bpf_map_update_batch', what);
}

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

/** struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags, name[16]. */
export function mapInfo(fd: number, what: string): MapInfo {
  const info = Buffer.alloc(96);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  check(fns.infoByFd(fd, info, len), 'bpf_obj_get_info_by_fd', what);
  const name = info.subarray(24, 40);
  const end = name.indexOf(0);
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    keySize: info.readUInt32LE(8),
    valueSize: info.readUInt32LE(12),
    maxEntries: info.readUInt32LE(16),
    flags: info.readUInt32LE(20),
    name: name.subarray(0, end < 0 ? 16 : end).toString('latin1'),
  };
}

/** Creates an unpinned map (feature probes); returns its fd. */
export function mapCreate(type: number, name: string, keySize: number, valueSize: number, maxEntries: number, flags = 0): number {
  // struct bpf_map_create_opts: sz, btf_fd, btf_key_type_id, btf_value_type_id,
  // btf_vmlinux_value_type_id, inner_map_fd, map_flags, map_extra (u64), numa_node, map_ifindex.
  const opts = Buffer.alloc(48);
  opts.writeBigUInt64LE(48n, 0);
  opts.writeUInt32LE(flags, 28);
  return check(fns.mapCreate(type, name, keySize, valueSize, maxEntries, opts), 'bpf_map_create', name);
}

const queryFn = lib.func(
  'int bpf_prog_query(int target_fd, int type, uint32_t query_flags, void *attach_flags, void *prog_ids, void *prog_cnt)',
);

/** enum bpf_attach_type values sockmesh attaches with. */
export const AttachType = {
  CGROUP_SOCK_OPS: 3,
  SK_MSG_VERDICT: 7,
  CGROUP_INET4_CONNECT: 10,
  CGROUP_INET6_CONNECT: 11,
  CGROUP_GETSOCKOPT: 21,
  CGROUP_UDP4_SENDMSG: 14,
  CGROUP_UDP4_RECVMSG: 19,
  CGROUP_INET4_GETPEERNAME: 29,
  CGROUP_INET6_GETPEERNAME: 30,
  SK_LOOKUP: 36,
} as const;

/** Ids of the programs attached to a cgroup (or sockmap) fd for one attach type. */
export function progQuery(targetFd: number, type: number, what: string): number[] {
  const max = 64;
  const ids = Buffer.alloc(4 * max);
  const cnt = Buffer.alloc(4);
  cnt.writeUInt32LE(max);
  check(queryFn(targetFd, type, 0, null, ids, cnt), 'bpf_prog_query', what);
  return Array.from({ length: cnt.readUInt32LE() }, (_, i) => ids.readUInt32LE(i * 4));
}

/** struct bpf_prog_info starts with type, id. */
export function progId(fd: number, what: string): number {
  const info = Buffer.alloc(256);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  check(fns.infoByFd(fd, info, len), 'bpf_obj_get_info_by_fd', what);
  return info.readUInt32LE(4);
}

/** A program's id and tag (the hash of its instructions, map references left out: the same
 * object loaded twice gives the same tag). struct bpf_prog_info: type, id, tag[8]. */
export function progInfo(fd: number, what: string): { id: number; tag: string } {
  const info = Buffer.alloc(256);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  check(fns.infoByFd(fd, info, len), 'bpf_obj_get_info_by_fd', what);
  return { id: info.readUInt32LE(4), tag: info.subarray(8, 16).toString('hex') };
}

const linkFns = {
  create: lib.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)'),
  update: lib.func('int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)'),
  detach: lib.func('int bpf_link_detach(int link_fd)'),
  pin: lib.func('int bpf_obj_pin(int fd, const char *pathname)'),
};

/** Attaches a program to a target (a cgroup fd) as a bpf_link; returns the link's fd. */
export function linkCreate(progFd: number, targetFd: number, attachType: number, what: string): number {
  return check(linkFns.create(progFd, targetFd, attachType, null), 'bpf_link_create', what);
}

/** Replaces the link's program, atomically: every hook runs the old program or the new one. */
export function linkUpdate(linkFd: number, newProgFd: number, what: string): void {
  check(linkFns.update(linkFd, newProgFd, null), 'bpf_link_update', what);
}

/** Detaches the link's program; the link stays (defunct) until its last reference goes. */
export function linkDetach(linkFd: number, what: string): void {
  check(linkFns.detach(linkFd), 'bpf_link_detach', what);
}

export function objPin(fd: number, path: string): void {
  check(linkFns.pin(fd, path), 'bpf_obj_pin', path);
}

/** struct bpf_link_info: type, id, prog_id. */
export function linkInfo(fd: number, what: string): { id: number; progId: number } {
  const info = Buffer.alloc(64);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  check(fns.infoByFd(fd, info, len), 'bpf_obj_get_info_by_fd', what);
  return { id: info.readUInt32LE(4), progId: info.readUInt32LE(8) };
}
