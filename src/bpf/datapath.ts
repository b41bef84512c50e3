// Loading, pinning, attaching and detaching the sockmesh programs of one instance. Everything is
// pinned under one bpffs directory, so plain bpftool can inspect it and `rm -r` removes it.
//
// The cgroup programs are attached as bpf_links, pinned under links/: a new version of a program
// replaces the running one in one step (link update: every hook runs the old program or the new
// one), with no detach and no moment without capture. Instances attached before links (plain
// BPF_PROG_ATTACH) keep working; their next upgrade moves them to links.
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import * as bpf from '../../native/libbpf.js';
import { Codes, NotSupportedError, SockmeshError } from '../errors.js';
import { bpftool, bpftoolJson, BpftoolError } from './bpftool.js';
import { inboundLinks, updateInboundLinks } from './inbound.js';
import { MAP_NAMES, PROGRAMS, type MapName, type ProgramSpec } from './programs.js';

export interface PinLayout {
  root: string;
  progs: string;
  maps: string;
  links: string;
}

export function pinLayout(root: string): PinLayout {
  return { root, progs: `${root}/progs`, maps: `${root}/maps`, links: `${root}/links` };
}

export function linkPath(layout: PinLayout, prog: ProgramSpec): string {
  return `${layout.links}/${prog.name}`;
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

/** The pins of this version's programs and maps missing from a pin directory. */
export function missingPins(layout: PinLayout): string[] {
  return [...PROGRAMS.filter((p) => !existsSync(progPath(layout, p))).map((p) => p.name), ...MAP_NAMES.filter((m) => !existsSync(mapPath(layout, m)))];
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
  /** sk_lookup: the pod namespaces it is attached to. */
  namespaces?: number;
}

/** Which of the instance's programs are attached where they belong. */
export function programStatus(layout: PinLayout, cgroup: string | undefined): ProgramStatus[] {
  return PROGRAMS.map((p) => {
    const path = progPath(layout, p);
    if (!existsSync(path)) return { name: p.name, id: 0, attachType: p.bpftoolType, attached: false };
    const id = withFd(path, (fd) => bpf.progId(fd, path));
    let attached = false;
    if (p.target === 'netns') {
      const namespaces = inboundLinks(layout).length;
      return { name: p.name, id, attachType: p.bpftoolType, attached: namespaces > 0, namespaces };
    } else if (p.target === 'cgroup') {
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
      // sk_lookup goes to each pod's namespace, with the pods (src/bpf/inbound.ts).
      if (p.target === 'netns' || status.find((s) => s.name === p.name)?.attached) continue;
      try {
        if (p.target === 'cgroup') attachLink(layout, cgroup, p, progPath(layout, p));
        else await bpftool(['prog', 'attach', 'pinned', progPath(layout, p), p.bpftoolType, 'pinned', mapPath(layout, 'sm_sockhash')]);
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

/** Attaches the program at `prog` to the cgroup as a bpf_link pinned at the program's link path
 * (a stale pin there, a link whose program was detached, is replaced). */
function attachLink(layout: PinLayout, cgroup: string, p: ProgramSpec, prog: string): void {
  mkdirSync(layout.links, { recursive: true, mode: 0o700 });
  const path = linkPath(layout, p);
  rmSync(path, { force: true });
  withFd(prog, (progFd) => {
    const cg = openSync(cgroup, 'r');
    try {
      const link = bpf.linkCreate(progFd, cg, p.attachType, `${p.name} on ${cgroup}`);
      try {
        bpf.objPin(link, path); // closing the fd without a pin would detach it again
      } finally {
        bpf.close(link);
      }
    } finally {
      closeSync(cg);
    }
  });
}

/** Detaches the link pinned for `p` and removes its pin; false when there is none. */
function detachLink(layout: PinLayout, p: ProgramSpec): boolean {
  const path = linkPath(layout, p);
  if (!existsSync(path)) return false;
  withFd(path, (fd) => bpf.linkDetach(fd, path));
  rmSync(path, { force: true });
  return true;
}

/** Detaches the given programs (default: all) wherever they are attached. Best effort per program. */
export async function detach(layout: PinLayout, cgroup: string | undefined, which: readonly ProgramSpec[] = PROGRAMS): Promise<Error[]> {
  const errors: Error[] = [];
  const status = programStatus(layout, cgroup);
  for (const p of which) {
    const s = status.find((x) => x.name === p.name);
    if (!s?.attached || p.target === 'netns') continue; // its links go with the pins
    try {
      if (p.target === 'cgroup' && detachLink(layout, p)) continue;
      await bpftool(p.target === 'cgroup'
        ? ['cgroup', 'detach', cgroup as string, p.bpftoolType, 'id', String(s.id)]
        : ['prog', 'detach', 'pinned', progPath(layout, p), p.bpftoolType, 'pinned', mapPath(layout, 'sm_sockhash')]);
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
  const attachments = await sockmeshAttachments(cgroup);
  // Programs attached through a link are detached through it (BPF_PROG_DETACH refuses them).
  const links = attachments.length ? await cgroupLinks(cgroup) : [];
  for (const a of attachments) {
    try {
      const link = links.find((l) => l.progId === a.id);
      await bpftool(link ? ['link', 'detach', 'id', String(link.id)] : ['cgroup', 'detach', cgroup, a.spec.bpftoolType, 'id', String(a.id)]);
      detached.push(`${a.name} (id ${a.id}${link ? `, link ${link.id}` : ''})`);
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

/** The bpf_links attached to this cgroup, as `bpftool link show` lists them. */
async function cgroupLinks(cgroup: string): Promise<Array<{ id: number; progId: number }>> {
  const cgroupId = Number(statSync(cgroup).ino); // a cgroup2 directory's inode is its id
  const links = await bpftoolJson<Array<{ id: number; type: string; prog_id: number; cgroup_id?: number }>>(['link', 'show']);
  return links.filter((l) => l.type === 'cgroup' && l.cgroup_id === cgroupId).map((l) => ({ id: l.id, progId: l.prog_id }));
}

export interface UpgradeResult {
  /** Programs whose running version was replaced: name, old and new program id. */
  replaced: Array<{ name: string; from: number; to: number }>;
}

function progTag(path: string): { id: number; tag: string } {
  return withFd(path, (fd) => bpf.progInfo(fd, path));
}

function mapLayout(path: string): string {
  const i = withFd(path, (fd) => bpf.mapInfo(fd, path));
  return `type ${i.type}, key ${i.keySize} B, value ${i.valueSize} B, ${i.maxEntries} entries, flags ${i.flags}`;
}

/** What an upgrade that stopped half-way left: its staging directory (the program pins are
 * replaced one rename at a time, so each name always holds a program). */
export function recoverInterruptedUpgrade(layout: PinLayout): void {
  rmSync(`${layout.root}/staging`, { recursive: true, force: true });
}

/**
 * Replaces the instance's running programs with those of `objectPath`, in place, when they differ
 * (by tag): the new programs are loaded onto the instance's own pinned maps, each cgroup link is
 * updated to its new program (atomic per hook: no detach, no moment without capture), the sk_msg
 * program is replaced on the sockhash (sockets already spliced keep the version they joined with),
 * and the program pins follow. An object whose maps differ in layout from the pinned ones is
 * refused before anything changes; a failure half-way puts the old programs back.
 */
export async function upgradePrograms(layout: PinLayout, cgroup: string, objectPath: string): Promise<UpgradeResult> {
  const stage = pinLayout(`${layout.root}/staging`);
  unpin(stage);
  await loadAndPin(stage, objectPath); // on its own maps: its tags and its map layouts
  try {
    const changed = PROGRAMS.filter((p) => progTag(progPath(stage, p)).tag !== progTag(progPath(layout, p)).tag);
    if (!changed.length) return { replaced: [] };
    const diffs = MAP_NAMES.flatMap((m) => {
      const [now, next] = [mapLayout(mapPath(layout, m)), mapLayout(mapPath(stage, m))];
      return now === next ? [] : [`${m} (running: ${now}; new: ${next})`];
    });
    if (diffs.length) {
      throw new SockmeshError(Codes.INSTANCE_CONFLICT, `the BPF object ${objectPath} changes the layout of ${diffs.join('; ')}: `
        + 'its programs cannot take over the running maps. Keep the running version, or run sockmesh down and up again (capture stops in between).');
    }
  } finally {
    unpin(stage);
  }

  // The new programs again, now on the instance's maps.
  mkdirSync(stage.root, { recursive: true, mode: 0o700 });
  try {
    await bpftool(['prog', 'loadall', objectPath, stage.progs, ...MAP_NAMES.flatMap((m) => ['map', 'name', m, 'pinned', mapPath(layout, m)])]);
  } catch (cause) {
    unpin(stage);
    throw new SockmeshError(Codes.LOAD, `cannot load ${objectPath} onto the maps of ${layout.root}`, { cause });
  }
  const before = programStatus(layout, cgroup);
  const undo: Array<() => Promise<void> | void> = [];
  const legacy: Array<{ p: ProgramSpec; id: number }> = [];
  const replaced: UpgradeResult['replaced'] = [];
  try {
    for (const p of PROGRAMS) {
      const next = progPath(stage, p);
      const old = progPath(layout, p);
      const was = before.find((s) => s.name === p.name)!;
      if (p.target === 'netns') {
        undo.push(updateInboundLinks(layout, next, old));
      } else if (p.target === 'sockhash') {
        const sockhash = mapPath(layout, 'sm_sockhash');
        await bpftool(['prog', 'attach', 'pinned', next, p.bpftoolType, 'pinned', sockhash]);
        undo.push(() => bpftool(['prog', 'attach', 'pinned', old, p.bpftoolType, 'pinned', sockhash]).then(() => undefined));
      } else if (was.attached && existsSync(linkPath(layout, p))) {
        withFd(linkPath(layout, p), (link) => withFd(next, (prog) => bpf.linkUpdate(link, prog, `${p.name} link`)));
        undo.push(() => withFd(linkPath(layout, p), (link) => withFd(old, (prog) => bpf.linkUpdate(link, prog, `${p.name} link`))));
      } else {
        // Attached the older way (or not at all): the new program through a link; both run for a
        // moment (each hook is idempotent), then the old attachment goes.
        attachLink(layout, cgroup, p, next);
        undo.push(() => { detachLink(layout, p); });
        if (was.attached) legacy.push({ p, id: was.id });
      }
      replaced.push({ name: p.name, from: was.id, to: progTag(next).id });
    }
  } catch (err) {
    for (const u of undo.reverse()) await Promise.resolve(u()).catch(() => undefined);
    unpin(stage);
    throw new SockmeshError(Codes.ATTACH, 'the upgrade failed half-way; the running programs were put back', { cause: err });
  }
  for (const { p, id } of legacy) await bpftool(['cgroup', 'detach', cgroup, p.bpftoolType, 'id', String(id)]);
  // The pins follow the running programs, each replaced by one rename. An upgrade stopped here
  // leaves some pins old: the next start sees them differ from the object and upgrades again.
  for (const p of PROGRAMS) renameSync(progPath(stage, p), progPath(layout, p));
  unpin(stage);
  return { replaced };
}
