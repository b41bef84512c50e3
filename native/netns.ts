// Network namespaces by path: opening one without ever blocking (a config may name a FIFO, which a
// plain open() would wait on forever, on Node's main thread), checking that it is a network
// namespace (ioctl NS_GET_NSTYPE), and its cookie, the key sockmesh's BPF programs see through
// bpf_get_netns_cookie: enter the namespace on this thread with setns(2), ask a socket for
// SO_NETNS_COOKIE (Linux 5.14+), and go back. setns changes only the calling thread; nothing else
// runs on Node's main thread in between, since the whole call is synchronous.
import koffi from 'koffi';
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { Codes, SyscallError, UserError } from '../src/errors.js';

const libc = koffi.load('libc.so.6');
const setnsFn = libc.func('int setns(int fd, int nstype)');
const socketFn = libc.func('int socket(int domain, int type, int protocol)');
const getsockoptFn = libc.func('int getsockopt(int fd, int level, int optname, void *optval, void *optlen)');
const closeFn = libc.func('int close(int fd)');
const ioctlFn = libc.func('int ioctl(int fd, unsigned long request, unsigned long arg)');

const CLONE_NEWNET = 0x40000000;
const NS_GET_NSTYPE = 0xb703; // _IO(0xb7, 0x3)
const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_NETNS_COOKIE = 71;

function cookieHere(what: string): bigint {
  const s = socketFn(AF_INET, SOCK_DGRAM, 0);
  if (s < 0) throw new SyscallError('socket', koffi.errno(), what);
  try {
    const value = Buffer.alloc(8);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(8);
    if (getsockoptFn(s, SOL_SOCKET, SO_NETNS_COOKIE, value, len) !== 0) throw new SyscallError('getsockopt(SO_NETNS_COOKIE)', koffi.errno(), what);
    return value.readBigUInt64LE(0);
  } finally {
    closeFn(s);
  }
}

/**
 * Opens `path` as a network namespace: without blocking (O_NONBLOCK: a FIFO or device opens at
 * once, and is then refused), a regular nsfs file whose namespace type is net. Close the fd.
 */
export function openNetns(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (cause) {
    throw new UserError(Codes.USAGE, `network namespace ${path} cannot be opened: ${(cause as Error).message}`, { cause });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UserError(Codes.USAGE, `${path} is not a network namespace (it is ${kindOf(st)})`);
    const type = ioctlFn(fd, NS_GET_NSTYPE, 0);
    if (type !== CLONE_NEWNET) throw new UserError(Codes.USAGE, `${path} is not a network namespace${type < 0 ? ' (a regular file, not a namespace)' : ' (another kind of namespace)'}`);
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

function kindOf(st: { isFIFO(): boolean; isDirectory(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** The cookie of the namespace at `path` (e.g. /var/run/netns/NAME, /proc/PID/ns/net). */
export function netnsCookie(path: string): bigint {
  const target = openNetns(path);
  try {
    return netnsCookieOfFd(target, path);
  } finally {
    closeSync(target);
  }
}

/** The cookie of the network namespace open at `fd` (`what` names it in errors). */
export function netnsCookieOfFd(fd: number, what: string): bigint {
  const home = openSync('/proc/thread-self/ns/net', 'r');
  try {
    if (setnsFn(fd, CLONE_NEWNET) !== 0) throw new SyscallError('setns', koffi.errno(), what);
    try {
      return cookieHere(what);
    } finally {
      if (setnsFn(home, CLONE_NEWNET) !== 0) {
        // Staying in the pod's namespace would be far worse than stopping.
        process.stderr.write(`sockmesh: cannot return to its own network namespace after reading ${what}\n`);
        process.abort();
      }
    }
  } finally {
    closeSync(home);
  }
}

/** The cookie of this thread's own namespace. */
export function ownNetnsCookie(): bigint {
  return cookieHere('own network namespace');
}
