// Process-level libc calls through koffi: giving freed heap back to the kernel (malloc_trim) and
// replacing the process image in place (execve, so the pid that a supervisor watches stays).
import koffi from 'koffi';
import { SyscallError } from '../src/errors.js';

const libc = koffi.load('libc.so.6');
const mallocTrimFn = libc.func('int malloc_trim(size_t pad)');
const execveFn = libc.func('int execve(const char *path, const char **argv, const char **envp)');
const fcntlFn = libc.func('int fcntl(int fd, int cmd, ...)');
const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

/** Returns glibc's free heap pages to the kernel; true when memory was released. */
export function mallocTrim(): boolean {
  return mallocTrimFn(0) === 1;
}

/** Replaces this process with `path argv` (same pid); returns only by throwing. Standard input,
 * output and error go to the new image: Node marks them close-on-exec, so that is cleared first. */
export function execve(path: string, argv: string[], env: NodeJS.ProcessEnv): never {
  for (const fd of [0, 1, 2]) {
    const flags = fcntlFn(fd, F_GETFD) as number;
    if (flags >= 0 && flags & FD_CLOEXEC) fcntlFn(fd, F_SETFD, 'int', flags & ~FD_CLOEXEC);
  }
  const envp = Object.entries(env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
  execveFn(path, [...argv, null], [...envp, null]);
  throw new SyscallError('execve', koffi.errno(), path);
}

const F_SETPIPE_SZ = 1031;
const O_CLOEXEC = 0o2000000;
const pipe2Fn = libc.func('int pipe2(_Out_ int *fds, int flags)');

/** A pipe (close-on-exec both ends): [read end, write end]. Node's own child stdio pipes are
 * socket pairs, whose buffer F_SETPIPE_SZ cannot grow. */
export function pipe(): [number, number] {
  const fds = [0, 0];
  if (pipe2Fn(fds, O_CLOEXEC) !== 0) throw new SyscallError('pipe2', koffi.errno(), 'pipe');
  return [fds[0], fds[1]];
}

/** Grows a pipe's buffer (Linux F_SETPIPE_SZ); returns the size the kernel gave, or -1. */
export function setPipeSize(fd: number, bytes: number): number {
  return fcntlFn(fd, F_SETPIPE_SZ, 'int', bytes) as number;
}
