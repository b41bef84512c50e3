// Attaching and detaching an instance's programs. The cgroup programs are attached as bpf_links,
// pinned under links/: a new version of a program replaces the running one in one step (link update,
// see upgrade.ts). Instances attached before links (plain BPF_PROG_ATTACH) keep working; their next
// upgrade moves them to links. `down` finds what is attached by name in what the kernel shows, not
// through the pins (they may be gone).
import { closeSync, existsSync, mkdirSync, openSync, rmSync, statSync } from 'node:fs';
import * as bpf from '../../native/libbpf.js';
import { Codes, NotSupportedError, SockmeshError } from '../errors.js';
import { bpftool, bpftoolJson } from './bpftool.js';
import { inboundLinks } from './inbound.js';
import { linkPath, mapPath, progPath, withFd, type PinLayout } from './pins.js';
import { PROGRAMS, type ProgramSpec } from './programs.js';

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
export function attachLink(layout: PinLayout, cgroup: string, p: ProgramSpec, prog: string): void {
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
export function detachLink(layout: PinLayout, p: ProgramSpec): boolean {
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

