// The package's own directory, found from this file whether it runs from src/ (vitest) or dist/.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'bpf'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the sockmesh package root');
    dir = up;
  }
  cached = dir;
  return dir;
}

/** Where sockmesh keeps what must not outlive a reboot: records, locks, the control socket. */
export const STATE_DIR = process.env.SOCKMESH_STATE_DIR ?? '/run/sockmesh';
