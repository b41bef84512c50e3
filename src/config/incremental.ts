// Incremental YAML parsing for the agent's config file. A node's config can list 10,000 services;
// parsing all of it again for a one-line edit costs ~40 ms and megabytes of garbage. This parser
// cuts a file of the usual shape into chunks — each top-level section, and each item of the
// `services:` and `pods:` block sequences — parses each chunk with js-yaml, and keeps the results
// by chunk text, so an edit re-parses only the chunks it touched.
//
// It only ever takes that path when the result is certainly what one js-yaml load of the whole
// text gives: a file with anything unusual (documents markers, directives, anchors, aliases, tags,
// block scalars or merge keys in the sequences, tabs, duplicate top-level keys, an item that does
// not parse alone) is parsed whole, and so are all errors, so messages and positions stay js-yaml's.
import { CORE_SCHEMA, load } from 'js-yaml';

/** Top-level keys whose block sequences are cut per item. */
const SPLIT = new Set(['services', 'pods']);
/** Characters that could make an item depend on others, or on more than its own text. */
const UNSAFE_ITEM = /[&*!|>]|<</;

function yaml(text: string, filename: string): unknown {
  return load(text, { schema: CORE_SCHEMA, filename });
}

interface Section {
  key: string;
  /** The whole section's text (key line and its lines), when not cut into items. */
  text?: string;
  /** The items' texts, dedented to column 0, when the section is a block sequence. */
  items?: string[];
}

/** Cuts a file into sections and items, or returns undefined when it is not of the usual shape. */
export function chunk(text: string): Section[] | undefined {
  if (text.includes('\t') || /^(---|\.\.\.|%)/m.test(text)) return undefined;
  const lines = text.split('\n');
  const sections: Section[] = [];
  const seen = new Set<string>();
  let cur: { key: string; lines: string[] } | undefined;
  const flush = (): boolean => {
    if (!cur) return true;
    const { key, lines: ls } = cur;
    const body = ls.slice(1);
    const head = ls[0];
    const inline = head.slice(head.indexOf(':') + 1).replace(/\s+#.*$/, '').trim();
    if (SPLIT.has(key) && inline === '' && body.some((l) => /^ {2}- /.test(l) || /^ {2}-$/.test(l))) {
      const items: string[][] = [];
      for (const l of body) {
        if (/^\s*(#.*)?$/.test(l)) {
          if (items.length) items[items.length - 1].push(''); // blank or comment: nothing to parse
          continue;
        }
        if (/^ {2}-( |$)/.test(l)) items.push([l]);
        else if (/^ {4}/.test(l) && items.length) items[items.length - 1].push(l);
        else return false; // not a two-space block sequence: parse whole
      }
      const texts = items.map((it) => it.map((l) => l.slice(2)).join('\n'));
      if (texts.some((t) => UNSAFE_ITEM.test(t.replace(/#.*$/gm, '')))) return false;
      sections.push({ key, items: texts });
    } else {
      sections.push({ key, text: ls.join('\n') });
    }
    return true;
  };
  for (const line of lines) {
    if (/^\s*(#.*)?$/.test(line) && !cur) continue;
    const top = /^([A-Za-z_][\w-]*)\s*:(\s|$)/.exec(line);
    if (top) {
      if (!flush()) return undefined;
      if (seen.has(top[1])) return undefined; // duplicate key: js-yaml reports it
      seen.add(top[1]);
      cur = { key: top[1], lines: [line] };
    } else if (/^\S/.test(line)) {
      return undefined; // a top-level line of another shape
    } else if (cur) {
      cur.lines.push(line);
    } else {
      return undefined;
    }
  }
  return flush() ? sections : undefined;
}

export class IncrementalYaml {
  private cache = new Map<string, unknown>();
  /** Chunks parsed by the last call (the rest came from the cache); -1: parsed whole. */
  lastParsed = 0;

  constructor(private readonly maxEntries = 100_000) {}

  private part(text: string, filename: string): unknown {
    if (this.cache.has(text)) return this.cache.get(text);
    this.lastParsed += 1;
    const v = deepFreeze(yaml(text, filename));
    this.cache.set(own(text), v);
    return v;
  }

  /** The document, as one js-yaml load of `text` would give it. Throws js-yaml's errors. */
  parse(text: string, filename: string): unknown {
    this.lastParsed = 0;
    const sections = chunk(text);
    if (!sections) return this.whole(text, filename);
    if (this.cache.size > this.maxEntries) this.cache.clear();
    const used = new Set<string>();
    try {
      const doc: Record<string, unknown> = {};
      for (const s of sections) {
        if (s.items) {
          doc[s.key] = s.items.map((it) => {
            used.add(it);
            const seq = this.part(it, filename);
            if (!Array.isArray(seq) || seq.length !== 1) throw new Error('item is not one sequence entry');
            return seq[0];
          });
        } else {
          used.add(s.text!);
          const v = this.part(s.text!, filename) as Record<string, unknown> | null;
          if (!v || typeof v !== 'object' || Object.keys(v).length !== 1 || !(s.key in v)) throw new Error('section is not one key');
          doc[s.key] = v[s.key];
        }
      }
      // Keep only what this version uses, so the cache does not grow with every edit.
      for (const k of this.cache.keys()) if (!used.has(k)) this.cache.delete(k);
      return sections.length ? doc : yaml(text, filename);
    } catch {
      return this.whole(text, filename);
    }
  }

  private whole(text: string, filename: string): unknown {
    this.cache.clear();
    this.lastParsed = -1;
    return yaml(text, filename);
  }
}

/** A copy of `s` holding only its own characters. The chunks are slices of the whole file's text,
 * and a cached slice would keep that whole text (a megabyte with 10,000 services) alive. */
function own(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

/** Cached values are shared between versions of the document: frozen, so no reader can change
 * what the next version is built from. Arrays are copied at their exact length first (the parser
 * grows them as it goes; the agent keeps tens of thousands of small ones). */
function deepFreeze<T>(v: T): T {
  if (Array.isArray(v)) return Object.freeze(v.map(deepFreeze)) as T;
  if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) (v as Record<string, unknown>)[k] = deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}
