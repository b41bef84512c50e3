// The file source reads a config written in place only once its writer has closed it: a read
// between the truncation and the last write would apply a cut config (services missing, or the
// whole pod list). Real files, real writers (this process and a shell's `cat >`), no root.
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSource, type SourceEvent } from '../../src/sources/file.js';

const services = (n: number) => `services:\n${Array.from({ length: n }, (_, i) => `  - { name: s${i}, addresses: [10.96.${i >> 8}.${i & 255}], ports: [80] }`).join('\n')}\n`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('file source', () => {
  let dir: string;
  let path: string;
  let events: SourceEvent[];
  let source: FileSource;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
    path = join(dir, 'mesh.yaml');
    writeFileSync(path, services(3));
    events = [];
    source = new FileSource(path, (e) => events.push(e), { pollMs: 100 });
    source.start();
  });

  afterEach(() => {
    source.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const counts = () => events.map((e) => (e.kind === 'config' ? e.config.services.length : e.kind));
  async function until(pred: () => boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out; events: ${JSON.stringify(counts())}`);
      await sleep(10);
    }
  }

  it('waits for a writer that truncates, writes half, pauses and writes the rest, and applies only the whole file', async () => {
    const text = services(200);
    const cut = text.indexOf('\n  - { name: s100') + 1; // a valid YAML prefix: 100 services
    const fd = openSync(path, 'w'); // truncates
    writeSync(fd, text.slice(0, cut));
    await sleep(600); // longer than any settle time: the writer still has the file open
    writeSync(fd, text.slice(cut));
    closeSync(fd);
    await until(() => events.length >= 2);
    await sleep(300);
    expect(counts()).toEqual([3, 200]);
  });

  it('waits for `cat >` into the file while its input trickles in', async () => {
    const sh = spawn('sh', ['-c', `cat > "${path}"`], { stdio: ['pipe', 'ignore', 'ignore'] });
    const text = services(50);
    sh.stdin.write(text.slice(0, text.length / 2));
    await sleep(400);
    sh.stdin.end(text.slice(text.length / 2));
    await until(() => events.length >= 2);
    await sleep(300);
    expect(counts()).toEqual([3, 50]);
  });

  it('applies a file renamed onto the path at once (how editors save)', async () => {
    writeFileSync(join(dir, '.mesh.swp'), services(7));
    const t0 = Date.now();
    renameSync(join(dir, '.mesh.swp'), path);
    await until(() => events.length >= 2, 2000);
    expect(Date.now() - t0).toBeLessThan(500);
    expect(counts()).toEqual([3, 7]);
  });

  it('says when the file is gone, and reads it again when it comes back', async () => {
    rmSync(path);
    await until(() => events.length >= 2);
    writeFileSync(path, services(4));
    await until(() => events.length >= 3);
    expect(counts()).toEqual([3, 'missing', 4]);
  });
});
