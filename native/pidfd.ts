// Taking a copy of another process's file descriptor (pidfd_open + pidfd_getfd, Linux 5.6+, needs
// ptrace rights over it: root): the agent registers a sidecar listener that was already listening
// before sockmesh started, which the kernel hook that registers new ones never saw.
import koffi from 'koffi';
import { SyscallError } from '../src/errors.js';

const libc = koffi.load('libc.so.6');
const syscallFn = libc.func('long syscall(long number, ...)');
const closeFn = libc.func('int close(int fd)');

const SYS_PIDFD_OPEN = 434;
const SYS_PIDFD_GETFD = 438;

/** A new fd in this process for `fd` of process `pid` (close it when done). */
export function copyFd(pid: number, fd: number): number {
  const pidfd = Number(syscallFn(SYS_PIDFD_OPEN, 'int', pid, 'uint', 0));
  if (pidfd < 0) throw new SyscallError('pidfd_open', koffi.errno(), `pid ${pid}`);
  try {
    const copy = Number(syscallFn(SYS_PIDFD_GETFD, 'int', pidfd, 'int', fd, 'uint', 0));
    if (copy < 0) throw new SyscallError('pidfd_getfd', koffi.errno(), `fd ${fd} of pid ${pid}`);
    return copy;
  } finally {
    closeFn(pidfd);
  }
}
