// getsockopt(2) through koffi, for reading SO_ORIGINAL_DST off an accepted socket.
import koffi from 'koffi';
import { SyscallError } from '../src/errors.js';
import { bytesToIp } from '../src/net/addr.js';

const libc = koffi.load('libc.so.6');
const getsockoptFn = libc.func('int getsockopt(int fd, int level, int optname, void *optval, void *optlen)');

export const SOL_IP = 0;
export const SOL_IPV6 = 41;
/** SO_ORIGINAL_DST at SOL_IP; IP6T_SO_ORIGINAL_DST (the same number) at SOL_IPV6. */
export const SO_ORIGINAL_DST = 80;

/** Returns the option bytes the kernel wrote (at most `size`). */
export function getsockopt(fd: number, level: number, optname: number, size: number): Buffer {
  const value = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  if (getsockoptFn(fd, level, optname, value, len) !== 0) {
    throw new SyscallError('getsockopt', koffi.errno(), `fd ${fd} level ${level} option ${optname}`);
  }
  return value.subarray(0, len.readUInt32LE());
}

/**
 * The original destination of an accepted socket as host:port: SO_ORIGINAL_DST (IPv4, also an
 * IPv6 socket's IPv4 traffic), else IP6T_SO_ORIGINAL_DST (IPv6), as Envoy asks.
 */
export function originalDst(fd: number): { address: string; port: number } {
  let v4Error: unknown;
  try {
    const sa = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, 16);
    if (sa.length >= 8 && sa.readUInt16LE(0) === 2) return { address: `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`, port: sa.readUInt16BE(2) };
  } catch (e) {
    v4Error = e;
  }
  let sa6: Buffer;
  try {
    sa6 = getsockopt(fd, SOL_IPV6, SO_ORIGINAL_DST, 28);
  } catch (e) {
    throw v4Error ?? e;
  }
  if (sa6.length < 24 || sa6.readUInt16LE(0) !== 10) {
    throw new SyscallError('getsockopt', 97 /* EAFNOSUPPORT */, `fd ${fd}: the original destination is neither AF_INET nor AF_INET6`);
  }
  return { address: bytesToIp(sa6.subarray(8, 24)), port: sa6.readUInt16BE(2) };
}
