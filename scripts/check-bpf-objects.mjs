#!/usr/bin/env node
// Fails when the committed bpf/sockmesh.bpf.o differs from a fresh build of bpf/*.c: rebuilds into
// a temporary directory with the same Makefile and compares bytes.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = mkdtempSync(join(tmpdir(), 'sockmesh-bpf-'));
try {
  execFileSync('make', ['-s', '-C', join(root, 'bpf'), `OUT=${out}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  const fresh = readFileSync(join(out, 'sockmesh.bpf.o'));
  const committed = readFileSync(join(root, 'bpf', 'sockmesh.bpf.o'));
  if (!fresh.equals(committed)) {
    console.error('bpf/sockmesh.bpf.o is stale: it does not match a build of bpf/*.c. Run npm run build:bpf and commit the object.');
    process.exit(1);
  }
  console.log('bpf/sockmesh.bpf.o matches its sources');
} finally {
  rmSync(out, { recursive: true, force: true });
}
