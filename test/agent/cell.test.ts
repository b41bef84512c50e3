// The agent's parts start in order and stop in reverse; a part that fails to start stops the ones
// started before it (and itself: it may have started half), and one that fails to stop does not
// keep the others up.
import { describe, expect, it } from 'vitest';
import { Cells, type Cell } from '../../src/agent/cell.js';

function part(name: string, events: string[], fail?: 'start' | 'stop'): Cell {
  return {
    name,
    async start() {
      events.push(`start ${name}`);
      if (fail === 'start') throw new Error(`${name} cannot start`);
    },
    stop() {
      events.push(`stop ${name}`);
      if (fail === 'stop') throw new Error(`${name} cannot stop`);
    },
  };
}

describe('Cells', () => {
  it('starts in order, stops in reverse, once', async () => {
    const events: string[] = [];
    const cells = new Cells(['lock', 'socket', 'applier'].map((n) => part(n, events)), () => undefined);
    await cells.start();
    await cells.stop();
    await cells.stop();
    expect(events).toEqual(['start lock', 'start socket', 'start applier', 'stop applier', 'stop socket', 'stop lock']);
  });

  it('a failed start stops what started, the failed part included, and never starts the rest', async () => {
    const events: string[] = [];
    const cells = new Cells([part('lock', events), part('socket', events, 'start'), part('applier', events)], () => undefined);
    await expect(cells.start()).rejects.toThrow(/socket cannot start/);
    expect(events).toEqual(['start lock', 'start socket', 'stop socket', 'stop lock']);
  });

  it('a part that fails to stop is reported; the others still stop', async () => {
    const events: string[] = [];
    const errors: string[] = [];
    const cells = new Cells([part('lock', events), part('http', events, 'stop'), part('applier', events)], (cell, e) => errors.push(`${cell}: ${(e as Error).message}`));
    await cells.start();
    await cells.stop();
    expect(events.slice(3)).toEqual(['stop applier', 'stop http', 'stop lock']);
    expect(errors).toEqual(['http: http cannot stop']);
  });
});
