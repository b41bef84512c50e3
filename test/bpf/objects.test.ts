// The committed object must be exactly what the sources build to.
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/util/paths.js';
import { requirementsOrSkip } from '../helpers/privileged.js';

function missingTools(): string | undefined {
  for (const t of ['clang', 'bpftool', 'make']) {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
    } catch {
      return `needs ${t}`;
    }
  }
  return undefined;
}

const reason = missingTools();

describe.skipIf(requirementsOrSkip(reason))('prebuilt BPF object', () => {
  it('matches a fresh build of bpf/*.c', () => {
    const r = spawnSync(process.execPath, [join(packageRoot(), 'scripts', 'check-bpf-objects.mjs')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
