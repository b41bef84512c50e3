// The file source: a YAML config file, watched. It produces complete, validated desired states;
// it never touches the kernel. The directory is watched (not the file), so editors that save by
// rename and `mv` onto the path are seen; a slow poll backs the watch up (events can be missed on
// some filesystems). A file written in place is read only once its writer has closed it (inotify's
// IN_CLOSE_WRITE), never half-written. A file that is deleted or turns invalid produces a
// rejection, and the caller keeps the last good state.
import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { newParseCaches, parseConfigText, readConfigFile, type ParseCaches } from '../config/load.js';
import { ConfigError, describe } from '../errors.js';
import { IN, Inotify } from '../../native/inotify.js';

import type { Source, SourceEvent } from './source.js';

export type { SourceEvent } from './source.js';

export interface FileSourceOptions {
  /** Quiet time after the last event before reading (editors write in several steps). */
  debounceMs?: number;
  /** Poll interval that backs up the watch. */
  pollMs?: number;
  /** How long a write in place may keep the file open before it is read anyway. */
  writeTimeoutMs?: number;
}

/** Reads and validates the file once (with `caches`, re-parsing only what changed since). */
export function readSource(path: string, caches?: ParseCaches): Extract<SourceEvent, { kind: 'config' | 'rejected' | 'missing' }> {
  try {
    return { kind: 'config', config: parseConfigText(readConfigFile(path), path, caches), source: path };
  } catch (e) {
    if (e instanceof ConfigError) return { kind: 'rejected', source: path, issues: e.issues, message: e.message };
    const missing = (e as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT';
    return missing
      ? { kind: 'missing', source: path, message: `${path} is gone; the last good state stays applied` }
      : { kind: 'rejected', source: path, issues: [{ path: '', message: describe(e) }], message: describe(e) };
  }
}

/**
 * Whether someone is writing the file in place right now, from the directory's inotify events: a
 * write (IN_MODIFY) or a creation (IN_CREATE) starts one, the writer's close (IN_CLOSE_WRITE) ends
 * it; a file renamed onto the path (IN_MOVED_TO: how editors and `mv` save) arrives whole. A file
 * read between a truncation and the last write would be a cut config: services or the whole pod
 * list missing, applied as if meant.
 */
class WriteTracker {
  private readonly inotify = new Inotify();
  /** Since when a write in place is open (0: none). */
  writingSince = 0;

  constructor(dir: string, private readonly name: string) {
    try {
      this.inotify.add(dir, IN.MODIFY | IN.CLOSE_WRITE | IN.CREATE | IN.MOVED_TO | IN.MOVED_FROM | IN.DELETE | IN.ONLYDIR);
    } catch (e) {
      this.inotify.close();
      throw e;
    }
  }

  /** Takes in the events queued so far. */
  drain(): void {
    for (const e of this.inotify.read()) {
      if (e.mask & IN.Q_OVERFLOW) {
        this.writingSince = 0; // events were lost: the settle check decides instead
        continue;
      }
      if (e.name !== this.name) continue;
      if (e.mask & (IN.MODIFY | IN.CREATE)) this.writingSince ||= Date.now();
      if (e.mask & (IN.CLOSE_WRITE | IN.MOVED_TO | IN.MOVED_FROM | IN.DELETE)) this.writingSince = 0;
    }
  }

  close(): void {
    this.inotify.close();
  }
}

export class FileSource implements Source {
  readonly path: string;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stamp = '';
  /** Parse caches shared with whoever read the file before (the agent's first read). */
  private readonly caches: ParseCaches;
  /** inotify's view of writes in place; undefined where it cannot be had (the settle check instead). */
  private tracker: WriteTracker | undefined;

  constructor(path: string, private readonly onEvent: (e: SourceEvent) => void, private readonly opts: FileSourceOptions = {}, caches?: ParseCaches) {
    this.path = resolve(path);
    this.caches = caches ?? newParseCaches();
  }

  get description(): string {
    return this.path;
  }

  private fileStamp(): string {
    try {
      const st = statSync(this.path, { bigint: true });
      return `${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      return 'missing';
    }
  }

  private schedule(delayMs = this.opts.debounceMs ?? 2): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), delayMs);
  }

  /** Reads the file once no write in place is open on it (inotify), or once it has settled. */
  private check(): void {
    if (this.tracker) {
      this.tracker.drain();
      const since = this.tracker.writingSince;
      if (since && Date.now() - since < (this.opts.writeTimeoutMs ?? 5000)) {
        this.schedule(25); // the writer's close is an event fs.watch does not report: look again
        return;
      }
      this.emit();
      return;
    }
    void this.settled().then((ok) => { if (ok) this.emit(); });
  }

  /**
   * Without inotify: the file counts as written once two looks 100 ms apart find the same inode,
   * size and mtime (2 s at most).
   */
  private async settled(): Promise<boolean> {
    let last = this.fileStamp();
    if (last === this.stamp) return false;
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const now = this.fileStamp();
      if (now === last) return true;
      last = now;
    }
    return true;
  }

  private emit(): void {
    const stamp = this.fileStamp();
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    this.onEvent(readSource(this.path, this.caches));
  }

  /** Emits the current state once, then on every change. */
  start(): void {
    this.stamp = this.fileStamp();
    this.onEvent(readSource(this.path, this.caches));
    const name = basename(this.path);
    try {
      this.tracker = new WriteTracker(dirname(this.path), name);
    } catch {
      this.tracker = undefined; // no inotify instance to be had (limits): settle checks instead
    }
    this.watcher = watch(dirname(this.path), { persistent: true }, (_event, file) => {
      if (file === null || file === name) this.schedule();
    });
    this.watcher.on('error', () => { /* the poll below keeps going */ });
    this.poll = setInterval(() => this.check(), this.opts.pollMs ?? 2000);
    this.poll.unref();
  }

  stop(): void {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.timer);
    this.tracker?.close();
    this.tracker = undefined;
  }
}
