// One operation at a time per instance: up, down and service take an exclusive flock on
// /run/sockmesh/<instance>.lock. The kernel releases it when the holder exits, also on kill -9,
// so a crashed command never blocks the next one.
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tryLockExclusive, unlock } from '../../native/flock.js';
import { Codes, SockmeshError } from '../errors.js';
import { STATE_DIR } from './state.js';

export interface LockOptions {
  /** Give up after this long (default 60 s). */
  timeoutMs?: number;
  /** Told once when the lock is busy, with the holder's pid if known. */
  onWait?: (holder: string) => void;
  dir?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs fn while holding the instance's lock. */
export async function withInstanceLock<T>(instance: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const dir = opts.dir ?? STATE_DIR;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = `${dir}/${instance}.lock`;
  const fd = openSync(path, 'a+', 0o600);
  try {
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
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
    writeFileSync(path, `${process.pid}\n`);
    try {
      return await fn();
    } finally {
      unlock(fd);
    }
  } finally {
    closeSync(fd);
  }
}
