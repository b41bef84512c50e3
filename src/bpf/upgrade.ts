// Replacing a running instance's programs in place with those of a newer object: link updates, no
// moment without capture; refused before anything changes when the maps' layouts differ.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import * as bpf from '../../native/libbpf.js';
import { Codes, SockmeshError } from '../errors.js';
import { attachLink, detachLink, programStatus } from './attach.js';
import { bpftool } from './bpftool.js';
import { updateInboundLinks } from './inbound.js';
import { loadAndPin } from './load.js';
import { linkPath, mapPath, pinLayout, progPath, unpin, withFd, type PinLayout } from './pins.js';
import { MAP_NAMES, PROGRAMS, type ProgramSpec } from './programs.js';

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
