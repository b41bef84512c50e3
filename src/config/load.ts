// Reading a config: a YAML file, or the embedded default.
import { closeSync, fstatSync, openSync, readSync, constants as fsc } from 'node:fs';
import { CORE_SCHEMA, load, loadAll } from 'js-yaml';
import { Codes, ConfigError, UserError } from '../errors.js';
import { DEFAULT_CONFIG_YAML } from './default.js';
import type { MeshConfig } from './model.js';
import { IncrementalYaml } from './incremental.js';
import { validateConfig, type ServiceCache } from './validate/index.js';

/** What a long-lived reader (the agent's file source) keeps between versions of one file. */
export interface ParseCaches {
  yaml: IncrementalYaml;
  services: ServiceCache;
}

export function newParseCaches(): ParseCaches {
  return { yaml: new IncrementalYaml(), services: new WeakMap() };
}

/**
 * A config file is the sockmesh config, optionally followed by Istio documents (`---` between
 * them): the first document's text, and the text of the others. A `---` line at column 0 always
 * starts a document in YAML (a block scalar's content is indented), so cutting there is exact.
 */
export function splitDocuments(text: string): { config: string; rest: string } {
  const re = /^---[ \t]*(?:#.*)?$/gm;
  let m: RegExpExecArray | null;
  let start = 0;
  while ((m = re.exec(text)) !== null) {
    // A marker before any content starts the config document itself.
    if (!text.slice(start, m.index).split('\n').some((l) => l.trim() !== '' && !l.trim().startsWith('#'))) {
      start = m.index + m[0].length;
      continue;
    }
    // The rest keeps its line numbers (js-yaml's errors name the file's lines).
    const before = text.slice(0, m.index).split('\n').length - 1;
    return { config: text.slice(start, m.index), rest: `${'\n'.repeat(before)}${text.slice(m.index)}` };
  }
  return { config: text.slice(start), rest: '' };
}

export function parseConfigText(text: string, source: string, caches?: ParseCaches): MeshConfig {
  let doc: unknown;
  let more: unknown[] = [];
  try {
    const { config, rest } = splitDocuments(text);
    // js-yaml: YAML 1.2 core schema, duplicate keys are errors; ~10x faster than `yaml` on the
    // 10,000-service files the agent reloads on every edit (incrementally, with caches).
    doc = caches ? caches.yaml.parse(config, source) : load(config, { schema: CORE_SCHEMA, filename: source });
    if (rest) more = loadAll(rest, undefined, { schema: CORE_SCHEMA, filename: source });
  } catch (e) {
    const first = (e as Error).message.split('\n')[0];
    throw new ConfigError(source, [{ path: '', message: `not valid YAML: ${first.length > 200 ? `${first.slice(0, 200)}…` : first}` }]);
  }
  return validateConfig(doc, source, caches?.services, more);
}

/** A config larger than this is refused unread (10,000 services are about 1 MiB of YAML). */
export const CONFIG_MAX_BYTES = 32 * 1024 * 1024;

/**
 * Reads a config file: regular files only (a FIFO or a device would block or never end), opened
 * without blocking and checked on the descriptor, so a path swapped for a FIFO cannot hang us.
 */
export function readConfigFile(path: string): string {
  if (path === '') throw new UserError(Codes.USAGE, 'the config path is empty');
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY);
  } catch (cause) {
    throw new UserError(Codes.CONFIG_READ, `cannot read config ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UserError(Codes.CONFIG_READ, `config ${path} is not a regular file (a FIFO, device or directory cannot be a config)`);
    if (st.size > CONFIG_MAX_BYTES) throw new UserError(Codes.CONFIG_READ, `config ${path} has ${st.size} bytes; sockmesh reads at most ${CONFIG_MAX_BYTES}`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Loads and validates `path`, or the embedded default when path is undefined. */
export function loadConfig(path: string | undefined): MeshConfig {
  if (path === undefined) return parseConfigText(DEFAULT_CONFIG_YAML, '(embedded default)');
  return parseConfigText(readConfigFile(path), path);
}
