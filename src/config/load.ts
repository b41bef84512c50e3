// Reading a config: a YAML file, or the embedded default.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { Codes, ConfigError, UserError } from '../errors.js';
import { DEFAULT_CONFIG_YAML } from './default.js';
import type { MeshConfig } from './model.js';
import { validateConfig } from './validate.js';

export function parseConfigText(text: string, source: string): MeshConfig {
  let doc: unknown;
  try {
    doc = parse(text, { uniqueKeys: true });
  } catch (e) {
    throw new ConfigError(source, [{ path: '', message: `not valid YAML: ${(e as Error).message.split('\n')[0]}` }]);
  }
  return validateConfig(doc, source);
}

/** Loads and validates `path`, or the embedded default when path is undefined. */
export function loadConfig(path: string | undefined): MeshConfig {
  if (path === undefined) return parseConfigText(DEFAULT_CONFIG_YAML, '(embedded default)');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new UserError(Codes.CONFIG_READ, `cannot read config ${path}: ${(cause as Error).message}`, { cause });
  }
  return parseConfigText(text, path);
}
