// flock(2) through koffi: advisory whole-file locks that the kernel drops when the process dies.
import koffi from 'koffi';
import { SyscallError } from '../src/errors.js';

const libc = koffi.load('libc.so.6');
const flockFn = libc.func('int flock(int fd, int operation)');

export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
const EWOULDBLOCK = 11;

/** Tries to take an exclusive lock without blocking; false when another holder has it. */
export function tryLockExclusive(fd: number, what: string): boolean {
  if (flockFn(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const errno = koffi.errno();
  if (errno === EWOULDBLOCK) return false;
  throw new SyscallError('flock', errno, what);
}

export function unlock(fd: number): void {
  flockFn(fd, LOCK_UN);
}
