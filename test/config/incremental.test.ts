// The incremental parser gives exactly what one js-yaml load of the whole text gives, re-parses
// only what an edit touched, and parses whole whatever is not of the usual shape.
import { CORE_SCHEMA, load } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { chunk, IncrementalYaml } from '../../src/config/incremental.js';
import { newParseCaches, parseConfigText } from '../../src/config/load.js';

const whole = (t: string) => load(t, { schema: CORE_SCHEMA });

const BASE = `# mesh
sidecar: { uid: 1337 }   # the proxy
services:
  - { name: a, addresses: [10.96.0.20], ports: [9080] }
  # a comment between items
  - name: b
    ports: [9090, 9091]   # block style
    splice: never

  - { name: c,
      ports: [1] }
capture:
  includeOutboundCIDRs: ['*']
pods:
  - { name: p, cgroup: p, netns: n }
`;

describe('incremental YAML', () => {
  it('equals a whole parse for files of the usual shape and for edits of them', () => {
    const p = new IncrementalYaml();
    const versions = [
      BASE,
      BASE.replace('ports: [9080]', 'ports: [9081]'),
      BASE.replace('  - { name: c,', '  - { name: d, ports: [2] }\n  - { name: c,'),
      BASE.replace('splice: never', 'splice: always'),
      `${BASE}spliceQueueBytes: 131072\n`,
      'services: []\n',
      '# only a comment\n',
      '',
    ];
    for (const v of versions) expect(p.parse(v, 't'), v).toEqual(whole(v));
  });

  it('re-parses only the items an edit touched', () => {
    const p = new IncrementalYaml();
    const many = `services:\n${Array.from({ length: 500 }, (_, i) => `  - { name: s${i}, ports: [${1000 + i}] }`).join('\n')}\n`;
    p.parse(many, 't');
    expect(p.lastParsed).toBe(500);
    const edited = many.replace('name: s250, ports: [1250]', 'name: s250, ports: [1250], redirect: false');
    expect(p.parse(edited, 't')).toEqual(whole(edited));
    expect(p.lastParsed).toBe(1);
  });

  it('parses whole (and fails as js-yaml does) whatever is not of the usual shape', () => {
    for (const odd of [
      'services:\n- { name: a, ports: [1] }\n',                         // sequence at column 0
      'base: &b { ports: [1] }\nservices:\n  - { <<: *b, name: a }\n',  // anchors and merge keys
      '---\nservices: []\n',                                            // document marker
      'services:\n\t- { name: a }\n',                                   // tabs
      'services: []\nservices: []\n',                                   // duplicate key
    ]) {
      expect(chunk(odd), odd).toBeUndefined();
      const p = new IncrementalYaml();
      let a: unknown;
      let errA = '';
      try { a = p.parse(odd, 't'); } catch (e) { errA = (e as Error).message; }
      let b: unknown;
      let errB = '';
      try { b = whole(odd); } catch (e) { errB = (e as Error).message; }
      // Both fail or neither; the same reason when they do.
      expect(Boolean(errA)).toBe(Boolean(errB));
      expect(errA.replace(/ in "t"/, '').split('\n')[0]).toBe(errB.split('\n')[0]);
      expect(a).toEqual(b);
      expect(p.lastParsed).toBe(-1);
    }
  });

  it('gives the same validated config, and the same errors, as a parse without caches', () => {
    const caches = newParseCaches();
    expect(parseConfigText(BASE, 't', caches)).toEqual(parseConfigText(BASE, 't'));
    const bad = BASE.replace('ports: [9080]', 'ports: [70000]');
    expect(() => parseConfigText(bad, 't', caches)).toThrow(/services\[0\]\.ports\[0\]: must be between 1 and 65535, got 70000/);
    expect(parseConfigText(BASE, 't', caches)).toEqual(parseConfigText(BASE, 't'));
    expect(() => parseConfigText('services: [', 't', caches)).toThrow(/not valid YAML/);
  });

  it('keeps one frozen copy of an unchanged service between versions, shared by parse and validation', () => {
    const caches = newParseCaches();
    const v1 = parseConfigText(BASE, 't', caches);
    const v2 = parseConfigText(BASE.replace('ports: [1]', 'ports: [2]'), 't', caches);
    // Unchanged items: the very same validated objects, whose arrays are the parse's frozen ones.
    expect(v2.services[0]).toBe(v1.services[0]);
    expect(Object.isFrozen(v2.services[0].addresses)).toBe(true);
    expect(Object.isFrozen(v2.services[1].ports)).toBe(true);
    // The edited one is new; nobody can change what a later version would reuse.
    expect(v2.services[2]).not.toBe(v1.services[2]);
    expect(v2.services[2].ports).toEqual([2]);
    expect(() => (v2.services[0].addresses as string[]).push('10.0.0.1')).toThrow(TypeError);
  });
});
