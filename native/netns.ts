// The cookie of a network namespace (the key sockmesh's BPF programs see through
// bpf_get_netns_cookie): enter the namespace on this thread with setns(2), ask a socket for
// SO_NETNS_COOKIE (Linux 5.14+), and go back. setns changes only the calling thread; nothing else
// runs on Node's main thread in between, since the whole call is synchronous.
import koffi from 'koffi';
import { closeSync, openSync } from 'node:fs';
import { SyscallError } from '../src/errors.js';

const libc = koffi.load('libc.so.6');
const setnsFn = libc.func('int setns(int fd, int nstype)');
const socketFn = libc.func('int socket(int domain, int type, int protocol)');
const getsockoptFn = libc.func('int getsockopt(int fd, int level, int optname, void *optval, void *optlen)');
const closeFn = libc.func('int close(int fd)');

const CLONE_NEWNET = 0x40000000;
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

/** The cookie of the namespace at `path` (e.g. /var/run/netns/NAME, /proc/PID/ns/net). */
export function netnsCookie(path: string): bigint {
  const home = openSync('/proc/thread-self/ns/net', 'r');
  try {
    const target = openSync(path, 'r');
    try {
      if (setnsFn(target, CLONE_NEWNET) !== 0) throw new SyscallError('setns', koffi.errno(), path);
      try {
        return cookieHere(path);
      } finally {
        if (setnsFn(home, CLONE_NEWNET) !== 0) {
          // Staying in the pod's namespace would be far worse than stopping.
          process.stderr.write(`sockmesh: cannot return to its own network namespace after reading ${path}\n`);
          process.abort();
        }
      }
    } finally {
      closeSync(target);
    }
  } finally {
    closeSync(home);
  }
}

/** The cookie of this thread's own namespace. */
export function ownNetnsCookie(): bigint {
  return cookieHere('own network namespace');
}
