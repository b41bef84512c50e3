// The file source: a YAML config file, watched. It produces complete, validated desired states;
// it never touches the kernel. The directory is watched (not the file), so editors that save by
// rename and `mv` onto the path are seen; a slow poll backs the watch up (events can be missed on
// some filesystems). A file that is deleted or turns invalid produces a rejection, and the caller
// keeps the last good state.
import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { newParseCaches, parseConfigText, readConfigFile, type ParseCaches } from '../config/load.js';
import { ConfigError, describe } from '../errors.js';

import type { Source, SourceEvent } from './source.js';

export type { SourceEvent } from './source.js';

export interface FileSourceOptions {
  /** Quiet time after the last event before reading (editors write in several steps). */
  debounceMs?: number;
  /** Poll interval that backs up the watch. */
  pollMs?: number;
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

export class FileSource implements Source {
  readonly path: string;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stamp = '';
  /** Parse caches shared with whoever read the file before (the agent's first read). */
  private readonly caches: ParseCaches;

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

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.emit(), this.opts.debounceMs ?? 2);
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
    this.watcher = watch(dirname(this.path), { persistent: true }, (_event, file) => {
      if (file === null || file === name) this.schedule();
    });
    this.watcher.on('error', () => { /* the poll below keeps going */ });
    this.poll = setInterval(() => this.emit(), this.opts.pollMs ?? 2000);
    this.poll.unref();
  }

  stop(): void {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.timer);
  }
}
