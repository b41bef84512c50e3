// The agent's memory release: a burst of work ends in one collection that gives garbage back.
import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { MemoryReleaser, releaseMemory } from '../../src/util/memory.js';

describe('releaseMemory', () => {
  it('collects garbage a caller made and dropped, and gives the heap pages back', async () => {
    await releaseMemory();
    const base = getHeapStatistics();
    let garbage: Array<{ name: string; ports: number[] }> | undefined = [];
    for (let i = 0; i < 300_000; i++) garbage.push({ name: `s${i}`, ports: [i, i + 1] });
    const grown = getHeapStatistics();
    expect(grown.used_heap_size - base.used_heap_size).toBeGreaterThan(20 * 1024 * 1024);
    garbage = undefined;
    await releaseMemory();
    const after = getHeapStatistics();
    // The garbage is gone, and so are the pages it filled.
    expect(after.used_heap_size - base.used_heap_size).toBeLessThan(5 * 1024 * 1024);
    expect(after.total_heap_size).toBeLessThan(grown.total_heap_size - 10 * 1024 * 1024);
  });
});

describe('MemoryReleaser', () => {
  it('releases once after a burst of work, not once per piece', async () => {
    let released = 0;
    const done = new Promise<void>((resolve) => {
      const r = new MemoryReleaser(50, () => {
        released++;
        resolve();
      });
      for (let i = 0; i < 5; i++) r.work();
    });
    await done;
    // Nothing else was scheduled: give a second release every chance to (wrongly) happen.
    await new Promise((r) => setTimeout(r, 400));
    expect(released).toBe(1);
  });

  it('stop() cancels a pending release', async () => {
    let released = 0;
    const r = new MemoryReleaser(20, () => released++);
    r.work();
    r.stop();
    await new Promise((res) => setTimeout(res, 400));
    expect(released).toBe(0);
  });
});
