// docs/architecture.md is the import rule, not a picture of it: every relative import of src/ and
// native/ goes to the importing layer itself or to a layer its row names, and no file imports
// itself back through others (no circle).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = process.cwd();

/** The layers table: layer -> the layers it may import ('*': every one). */
function rules(): Map<string, Set<string> | '*'> {
  const text = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8');
  const out = new Map<string, Set<string> | '*'>();
  for (const line of text.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 5 || !/^`[^`]+`$/.test(cells[1])) continue;
    const layer = cells[1].slice(1, -1);
    const may = cells[3];
    out.set(layer, may.startsWith('every layer') ? '*' : new Set([...may.matchAll(/`([^`]+)`/g)].map((m) => m[1])));
  }
  return out;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** A file's layer: src/<folder>, a top-level src/<file>.ts, or native. */
function layerOf(path: string): string {
  const parts = relative(ROOT, path).split('/');
  if (parts[0] === 'native') return 'native';
  return parts.length === 2 ? `src/${parts[1]}` : `src/${parts[1]}`;
}

/** Relative imports (static, dynamic and type-only), resolved to .ts paths. */
function imports(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  return [...text.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)].map((m) => normalize(join(dirname(path), m[1])).replace(/\.js$/, '.ts'));
}

const all = [...files(join(ROOT, 'src')), ...files(join(ROOT, 'native'))];

describe('docs/architecture.md against the imports', () => {
  const table = rules();

  it('names every layer there is', () => {
    const layers = new Set(all.map(layerOf));
    expect([...layers].filter((l) => !table.has(l)).sort()).toEqual([]);
    expect(table.size).toBeGreaterThanOrEqual(15);
  });

  it('every import goes to its own layer or one its row allows', () => {
    const broken: string[] = [];
    for (const f of all) {
      const from = layerOf(f);
      const may = table.get(from);
      for (const t of imports(f)) {
        const to = layerOf(t);
        if (to === from || may === '*' || may?.has(to)) continue;
        broken.push(`${relative(ROOT, f)} -> ${relative(ROOT, t)} (${from} may not import ${to})`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('no file imports itself back through others', () => {
    const graph = new Map(all.map((f) => [f, imports(f).filter((t) => all.includes(t))]));
    const state = new Map<string, 'open' | 'done'>();
    const circles: string[] = [];
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        circles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(ROOT, p)).join(' -> '));
        return;
      }
      state.set(f, 'open');
      for (const t of graph.get(f) ?? []) visit(t, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of all) visit(f, []);
    expect(circles).toEqual([]);
  });
});
