// The committed object must be exactly what the sources build to.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/util/paths.js';
import { missingTools, requirementsOrSkip } from '../helpers/privileged.js';

const reason = missingTools(['clang', 'bpftool', 'make']);

describe.skipIf(requirementsOrSkip(reason))('prebuilt BPF object', () => {
  it('matches a fresh build of bpf/*.c', () => {
    const r = spawnSync(process.execPath, [join(packageRoot(), 'scripts', 'check-bpf-objects.mjs')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
