// Loading, pinning, attaching and detaching the sockmesh programs of one instance. Everything is
// pinned under one bpffs directory, so plain bpftool can inspect it and `rm -r` removes it.
import { existsSync, mkdirSync, openSync, closeSync, rmSync } from 'node:fs';
import * as bpf from '../../native/libbpf.js';
import { Codes, NotSupportedError, SockmeshError } from '../errors.js';
import { bpftool, bpftoolJson, BpftoolError } from './bpftool.js';
import { MAP_NAMES, PROGRAMS, type MapName, type ProgramSpec } from './programs.js';

export interface PinLayout {
  root: string;
  progs: string;
  maps: string;
}

export function pinLayout(root: string): PinLayout {
  return { root, progs: `${root}/progs`, maps: `${root}/maps` };
}

export function progPath(layout: PinLayout, prog: ProgramSpec): string {
  return `${layout.progs}/${prog.name}`;
}

export function mapPath(layout: PinLayout, name: MapName): string {
  return `${layout.maps}/${name}`;
}

/** True when every program and map of the object is pinned (an instance to adopt). */
export function isFullyPinned(layout: PinLayout): boolean {
  return PROGRAMS.every((p) => existsSync(progPath(layout, p))) && MAP_NAMES.every((m) => existsSync(mapPath(layout, m)));
}

/** Turns libbpf's complaint about a program or map into the kernel feature it names. */
export function featureFromLoadLog(log: string): { feature: string; detail: string } | undefined {
  const helper = /unknown func (bpf_\w+)#\d+/.exec(log);
  if (helper) return { feature: `BPF helper ${helper[1]}`, detail: 'the verifier does not know this helper' };
  const map = /map '(\w+)': failed to create: ([^\n]*)/.exec(log);
  if (map) return { feature: `BPF map ${map[1]}`, detail: `cannot create it: ${map[2]}` };
  const prog = /prog '(\w+)': (?:BPF program )?load failed: ([^\n]*)/.exec(log);
  if (prog) {
    const spec = PROGRAMS.find((p) => p.name === prog[1]);
    return { feature: spec?.feature ?? `BPF program ${prog[1]}`, detail: `program ${prog[1]} did not load: ${prog[2]}` };
  }
  return undefined;
}

/**
 * Loads the object and pins programs and maps under the layout. On failure nothing is left:
 * the pin directory is removed and the error names the missing kernel feature where it can.
 */
export async function loadAndPin(layout: PinLayout, objectPath: string): Promise<void> {
  if (!existsSync(objectPath)) {
    throw new SockmeshError(Codes.LOAD, `BPF object ${objectPath} is missing: run npm run build:bpf`);
  }
  // Root only, like the record and the control socket: the maps steer every pod's traffic.
  mkdirSync(layout.root, { recursive: true, mode: 0o700 });
  try {
    await bpftool(['prog', 'loadall', objectPath, layout.progs, 'pinmaps', layout.maps]);
  } catch (err) {
    rmSync(layout.root, { recursive: true, force: true });
    const log = err instanceof BpftoolError ? `${err.result.stderr}\n${err.result.stdout}` : '';
    const f = featureFromLoadLog(log);
    if (f) throw new NotSupportedError(f.feature, f.detail, { cause: err });
    throw new SockmeshError(Codes.LOAD, `cannot load ${objectPath}`, { cause: err });
  }
}

function withFd<T>(path: string, fn: (fd: number) => T): T {
  const fd = bpf.objGet(path);
  try {
    return fn(fd);
  } finally {
    bpf.close(fd);
  }
}

/** Ids of the programs attached to `cgroup` for one attach type. */
export function cgroupProgIds(cgroup: string, attachType: number): number[] {
  const fd = openSync(cgroup, 'r');
  try {
    return bpf.progQuery(fd, attachType, cgroup);
  } finally {
    closeSync(fd);
  }
}

export interface ProgramStatus {
  name: string;
  id: number;
  attachType: string;
  attached: boolean;
}

/** Which of the instance's programs are attached where they belong. */
export function programStatus(layout: PinLayout, cgroup: string | undefined): ProgramStatus[] {
  return PROGRAMS.map((p) => {
    const path = progPath(layout, p);
    if (!existsSync(path)) return { name: p.name, id: 0, attachType: p.bpftoolType, attached: false };
    const id = withFd(path, (fd) => bpf.progId(fd, path));
    let attached = false;
    if (p.target === 'cgroup') {
      attached = cgroup !== undefined && existsSync(cgroup) && cgroupProgIds(cgroup, p.attachType).includes(id);
    } else {
      const m = mapPath(layout, 'sm_sockhash');
      attached = existsSync(m) && withFd(m, (fd) => bpf.progQuery(fd, p.attachType, m)).includes(id);
    }
    return { name: p.name, id, attachType: p.bpftoolType, attached };
  });
}

/** Attaches every program not attached yet; returns the ones this call attached. */
export async function attachAll(layout: PinLayout, cgroup: string): Promise<ProgramSpec[]> {
  const status = programStatus(layout, cgroup);
  const done: ProgramSpec[] = [];
  try {
    for (const p of PROGRAMS) {
      if (status.find((s) => s.name === p.name)?.attached) continue;
      const args = p.target === 'cgroup'
        ? ['cgroup', 'attach', cgroup, p.bpftoolType, 'pinned', progPath(layout, p), 'multi']
        : ['prog', 'attach', 'pinned', progPath(layout, p), p.bpftoolType, 'pinned', mapPath(layout, 'sm_sockhash')];
      try {
        await bpftool(args);
      } catch (cause) {
        throw new NotSupportedError(p.feature, `cannot attach ${p.name} (${p.bpftoolType})`, { cause });
      }
      done.push(p);
    }
  } catch (err) {
    await detach(layout, cgroup, done);
    throw err;
  }
  return done;
}

/** Detaches the given programs (default: all) wherever they are attached. Best effort per program. */
export async function detach(layout: PinLayout, cgroup: string | undefined, which: readonly ProgramSpec[] = PROGRAMS): Promise<Error[]> {
  const errors: Error[] = [];
  const status = programStatus(layout, cgroup);
  for (const p of which) {
    const s = status.find((x) => x.name === p.name);
    if (!s?.attached) continue;
    const args = p.target === 'cgroup'
      ? ['cgroup', 'detach', cgroup as string, p.bpftoolType, 'id', String(s.id)]
      : ['prog', 'detach', 'pinned', progPath(layout, p), p.bpftoolType, 'pinned', mapPath(layout, 'sm_sockhash')];
    try {
      await bpftool(args);
    } catch (e) {
      errors.push(new SockmeshError(Codes.ATTACH, `cannot detach ${p.name}`, { cause: e }));
    }
  }
  return errors;
}

/**
 * The cgroups where this instance's programs are attached, found with `bpftool cgroup tree`:
 * for `down` when the record of the instance is gone.
 */
export async function findAttachedCgroups(layout: PinLayout, cgroup2Root: string): Promise<string[]> {
  const ids = new Set(programStatus(layout, undefined).map((p) => p.id).filter((id) => id > 0));
  if (!ids.size) return [];
  const tree = await bpftoolJson<Array<{ cgroup: string; programs: Array<{ id: number }> }>>(['cgroup', 'tree', cgroup2Root]);
  return tree.filter((t) => t.programs.some((p) => ids.has(p.id))).map((t) => t.cgroup);
}

/** Removes the whole pin directory (programs stay alive only while something else holds them). */
export function unpin(layout: PinLayout): void {
  rmSync(layout.root, { recursive: true, force: true });
}

/** A program attached to a cgroup, as the kernel shows it. */
export interface CgroupAttachment {
  id: number;
  name: string;
  spec: ProgramSpec;
}

/**
 * sockmesh programs attached to `cgroup`, found by name in what the kernel shows (not through
 * the pins, which can be gone: removed by hand, or made in a mount namespace that has ended).
 */
export async function sockmeshAttachments(cgroup: string): Promise<CgroupAttachment[]> {
  if (!existsSync(cgroup)) return [];
  const list = await bpftoolJson<Array<{ id: number; name?: string }>>(['cgroup', 'show', cgroup]);
  const out: CgroupAttachment[] = [];
  for (const p of list) {
    const spec = PROGRAMS.find((s) => s.target === 'cgroup' && s.name === p.name);
    if (spec) out.push({ id: p.id, name: spec.name, spec });
  }
  return out;
}

/**
 * Detaches every sockmesh program the kernel shows on `cgroup`, then checks again: returns the
 * names detached, and throws when something stays attached.
 */
export async function detachAllFrom(cgroup: string, instance: string): Promise<string[]> {
  const detached: string[] = [];
  const errors: Error[] = [];
  for (const a of await sockmeshAttachments(cgroup)) {
    try {
      await bpftool(['cgroup', 'detach', cgroup, a.spec.bpftoolType, 'id', String(a.id)]);
      detached.push(`${a.name} (id ${a.id})`);
    } catch (e) {
      errors.push(e as Error);
    }
  }
  const left = await sockmeshAttachments(cgroup);
  if (left.length) {
    throw new SockmeshError(Codes.ATTACH, `could not detach every program of "${instance}" from ${cgroup}: still attached ${left.map((a) => `${a.name} (id ${a.id})`).join(', ')}`, { cause: errors[0] });
  }
  return detached;
}
