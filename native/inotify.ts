// inotify(7) on a non-blocking descriptor, read when asked: Node's fs.watch does not report
// IN_CLOSE_WRITE (libuv leaves it out of its mask), and that is the event that says a writer has
// finished a file it wrote in place. No logic here: the file source decides what the events mean.
import koffi from 'koffi';
import { closeSync, readSync } from 'node:fs';
import { SyscallError } from '../src/errors.js';

const libc = koffi.load('libc.so.6');
const initFn = libc.func('int inotify_init1(int flags)');
const addFn = libc.func('int inotify_add_watch(int fd, const char *path, uint32_t mask)');

const IN_NONBLOCK = 0o4000;
const IN_CLOEXEC = 0o2000000;

export const IN = {
  MODIFY: 0x2, CLOSE_WRITE: 0x8, MOVED_FROM: 0x40, MOVED_TO: 0x80, CREATE: 0x100, DELETE: 0x200,
  DELETE_SELF: 0x400, MOVE_SELF: 0x800, Q_OVERFLOW: 0x4000, IGNORED: 0x8000, ONLYDIR: 0x01000000,
} as const;

export interface InotifyEvent {
  wd: number;
  mask: number;
  /** The entry's name inside a watched directory ('' for the directory itself). */
  name: string;
}

export class Inotify {
  private fd: number;
  private readonly buf = Buffer.alloc(64 * 1024);

  constructor() {
    this.fd = initFn(IN_NONBLOCK | IN_CLOEXEC);
    if (this.fd < 0) throw new SyscallError('inotify_init1', koffi.errno(), 'inotify');
  }

  /** Watches `path` for the events in `mask`; returns the watch descriptor. */
  add(path: string, mask: number): number {
    const wd = addFn(this.fd, path, mask);
    if (wd < 0) throw new SyscallError('inotify_add_watch', koffi.errno(), path);
    return wd;
  }

  /** Every event queued now (none: an empty list; it never waits). */
  read(): InotifyEvent[] {
    const out: InotifyEvent[] = [];
    for (;;) {
      let n: number;
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return out;
        throw e;
      }
      for (let off = 0; off + 16 <= n;) {
        const len = this.buf.readUInt32LE(off + 12);
        const raw = this.buf.subarray(off + 16, off + 16 + len);
        const end = raw.indexOf(0);
        out.push({ wd: this.buf.readInt32LE(off), mask: this.buf.readUInt32LE(off + 4), name: raw.subarray(0, end < 0 ? raw.length : end).toString() });
        off += 16 + len;
      }
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
