// One operation at a time per instance: up, down and service take an exclusive flock on
// /run/sockmesh/<instance>.lock. The kernel releases it when the holder exits, also on kill -9,
// so a crashed command never blocks the next one.
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tryLockExclusive, unlock } from '../../native/flock.js';
import { Codes, SockmeshError } from '../errors.js';
import { STATE_DIR } from './record.js';

export interface LockOptions {
  /** Give up after this long (default 60 s). */
  timeoutMs?: number;
  /** Told once when the lock is busy, with the holder's pid if known. */
  onWait?: (holder: string) => void;
  dir?: string;
  /** Remove the lock file before releasing it when this says so (the instance is gone). */
  removeAfter?: () => boolean;
}

/** Whether `path` still names the file open as `fd` (a remover may have unlinked it). */
function samePath(fd: number, path: string): boolean {
  try {
    return statSync(path).ino === fstatSync(fd).ino;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A held instance lock. */
export interface InstanceLock {
  /** Releases it; with `remove`, the lock file goes first (the instance is gone). */
  release(remove?: boolean): void;
}

/** Takes the instance's lock (waiting up to the timeout) and returns it held. */
export async function acquireInstanceLock(instance: string, opts: LockOptions = {}): Promise<InstanceLock> {
  const dir = opts.dir ?? STATE_DIR;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = `${dir}/${instance}.lock`;
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    const fd = openSync(path, 'a+', 0o600);
    await acquire(fd, path, instance, deadline, opts);
    if (!samePath(fd, path)) {
      // Locked a file that `down` removed meanwhile: start over on the new one.
      unlock(fd);
      closeSync(fd);
      continue;
    }
    writeFileSync(path, `${process.pid}\n`);
    let released = false;
    return {
      release(remove = false) {
        if (released) return;
        released = true;
        if (remove) rmSync(path, { force: true });
        unlock(fd);
        closeSync(fd);
      },
    };
  }
}

/** Runs fn while holding the instance's lock. */
export async function withInstanceLock<T>(instance: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const lock = await acquireInstanceLock(instance, opts);
  try {
    return await fn();
  } finally {
    lock.release(opts.removeAfter?.() ?? false);
  }
}

async function acquire(fd: number, path: string, instance: string, deadline: number, opts: LockOptions): Promise<void> {
  try {
    let told = false;
    while (!tryLockExclusive(fd, path)) {
      if (!told) {
        let holder = 'another sockmesh command';
        try { holder = `sockmesh pid ${readFileSync(path, 'utf8').trim() || '?'}`; } catch { /* keep the generic name */ }
        opts.onWait?.(holder);
        told = true;
      }
      if (Date.now() > deadline) {
        throw new SockmeshError(Codes.INSTANCE_BUSY, `instance "${instance}" is busy: another sockmesh command holds ${path}; try again`);
      }
      await sleep(25 + Math.random() * 50);
    }
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
