// Who is on the other end of a unix socket: SO_PEERCRED (pid, uid, gid as of connect()), and
// where the kernel supports it, a pidfd of the peer (SO_PEERPIDFD, Linux 6.5) that asks the
// process itself, whichever pid namespace it is in: its cgroup id (PIDFD_GET_INFO, 6.13) and its
// network namespace (PIDFD_GET_NET_NAMESPACE, 6.11). A pidfd names one process for its whole life,
// so a pid reused by another process cannot be mistaken for the caller. No logic here.
import koffi from 'koffi';
import { closeSync } from 'node:fs';
import { SyscallError } from '../src/errors.js';
import { getsockopt } from './sockopt.js';

const libc = koffi.load('libc.so.6');
const ioctlPtr = libc.func('int ioctl(int fd, unsigned long request, void *arg)');
const ioctlInt = libc.func('int ioctl(int fd, unsigned long request, unsigned long arg)');

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SO_PEERPIDFD = 77;
const PIDFD_GET_NET_NAMESPACE = 0xff04; // _IO(PIDFS_IOCTL_MAGIC, 4)
const PIDFD_GET_INFO = 0xc040ff0b; // _IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info) (64 bytes)
const PIDFD_INFO_CGROUPID = 4;

export interface PeerCred {
  /** In this process's pid namespace; 0 when the peer is not visible in it. */
  pid: number;
  uid: number;
  gid: number;
}

/** SO_PEERCRED of a connected unix socket. */
export function peerCred(fd: number): PeerCred {
  const v = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, 12);
  return { pid: v.readInt32LE(0), uid: v.readUInt32LE(4), gid: v.readUInt32LE(8) };
}

/** A pidfd for the peer of a unix socket (close it), or undefined where the kernel has none. */
export function peerPidfd(fd: number): number | undefined {
  try {
    return getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, 4).readInt32LE(0);
  } catch (e) {
    if (e instanceof SyscallError && (e.errno === 92 /* ENOPROTOOPT */ || e.errno === 22)) return undefined;
    throw e;
  }
}

/** The cgroup2 id of the process behind a pidfd, or undefined where the kernel cannot say. */
export function pidfdCgroupId(pidfd: number): bigint | undefined {
  const info = Buffer.alloc(64);
  info.writeBigUInt64LE(BigInt(PIDFD_INFO_CGROUPID), 0);
  if (ioctlPtr(pidfd, PIDFD_GET_INFO, info) !== 0) return undefined;
  return info.readBigUInt64LE(0) & BigInt(PIDFD_INFO_CGROUPID) ? info.readBigUInt64LE(8) : undefined;
}

/** An fd of the network namespace of the process behind a pidfd (close it), or undefined. */
export function pidfdNetns(pidfd: number): number | undefined {
  const fd = ioctlInt(pidfd, PIDFD_GET_NET_NAMESPACE, 0);
  return fd >= 0 ? fd : undefined;
}

export function closeFd(fd: number): void {
  closeSync(fd);
}
