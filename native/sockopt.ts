// getsockopt(2) through koffi, for reading SO_ORIGINAL_DST off an accepted socket.
import koffi from 'koffi';
import { SyscallError } from '../src/errors.js';

const libc = koffi.load('libc.so.6');
const getsockoptFn = libc.func('int getsockopt(int fd, int level, int optname, void *optval, void *optlen)');

export const SOL_IP = 0;
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

/** SO_ORIGINAL_DST of an IPv4 socket as host:port. */
export function originalDst(fd: number): { address: string; port: number } {
  const sa = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, 16);
  if (sa.length < 8 || sa.readUInt16LE(0) !== 2) {
    throw new SyscallError('getsockopt', 97 /* EAFNOSUPPORT */, `fd ${fd}: SO_ORIGINAL_DST is not AF_INET`);
  }
  return { address: `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`, port: sa.readUInt16BE(2) };
}
