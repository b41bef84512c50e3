// Names users choose are keys of null-prototype tables: `constructor` is a valid service name, and
// with any override present it used to find Object.prototype.constructor and lose capture.
import { describe, expect, it } from 'vitest';
import { assignServiceIds } from '../../src/plan/desired.js';
import { applyOverrides, OverrideStore } from '../../src/instance/overrides.js';
import { validateConfig } from '../../src/config/validate/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cfg = validateConfig({ services: [
  { name: 'constructor', addresses: ['10.96.0.1'], ports: [80] },
  { name: 'tostring', addresses: ['10.96.0.2'], ports: [80] },
  { name: 'reviews', addresses: ['10.96.0.3'], ports: [80] },
] }, 'test');

describe('names that are JavaScript object keys', () => {
  it('an override of another service leaves `constructor` switched on', () => {
    const out = applyOverrides(cfg, { reviews: { redirect: false } });
    expect(out.services.map((s) => [s.name, s.redirect])).toEqual([['constructor', true], ['tostring', true], ['reviews', false]]);
  });

  it('an override read back from the file applies to `constructor` itself, and only to it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
    try {
      const store = new OverrideStore(join(dir, 'o.json'));
      store.set('reviews', false);
      const again = new OverrideStore(join(dir, 'o.json'));
      again.load();
      expect(applyOverrides(cfg, again.all()).services[0].redirect).toBe(true);
      expect(again.reset('constructor')).toBe(false);
      again.set('constructor', false);
      expect(applyOverrides(cfg, again.all()).services.map((s) => s.redirect)).toEqual([false, true, false]);
      expect(again.reset('constructor')).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`constructor` gets an id of its own, kept across applies like any name', () => {
    const ids = assignServiceIds(['constructor', 'reviews'], Object.create(null), 10);
    expect({ ...ids }).toEqual({ constructor: 0, reviews: 1 });
    const again = assignServiceIds(['reviews', 'constructor'], JSON.parse(JSON.stringify(ids)), 10);
    expect({ ...again }).toEqual({ constructor: 0, reviews: 1 });
    // A parsed record's plain table: `constructor` absent there is a new name, not Object's function.
    const fresh = assignServiceIds(['constructor'], JSON.parse('{"reviews": 4}'), 10);
    expect(fresh.constructor).toBe(0);
  });
});
