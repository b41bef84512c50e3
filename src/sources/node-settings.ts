// The node-wide settings the Kubernetes source starts from: the --config file's sidecar, capture,
// exclude and queue settings, or the defaults. The file's services and pods would compete with the
// cluster's: refused.
import type { MeshConfig } from '../config/model.js';
import type { ParseCaches } from '../config/load.js';
import { validateConfig } from '../config/validate/index.js';
import { Codes, UserError } from '../errors.js';
import { readSource } from './file.js';

export function nodeSettings(path: string | undefined, caches?: ParseCaches): MeshConfig {
  if (path === undefined) return validateConfig({ services: [] }, '(defaults)');
  const e = readSource(path, caches);
  if (e.kind !== 'config') throw new UserError(Codes.CONFIG_INVALID, e.message);
  if (e.config.services.length || e.config.pods.length) {
    throw new UserError(Codes.USAGE, `${path}: with --kubernetes the cluster lists the services and pods; the file may set only sidecar, capture, exclude, spliceQueueBytes and spliceHops`);
  }
  return e.config;
}
