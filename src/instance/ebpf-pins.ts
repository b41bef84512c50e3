// eBPF mode's kernel objects for one instance: the pinned programs and maps loaded (a fresh
// instance), adopted (a restart, an update) or upgraded in place, and removed again.
import { existsSync } from 'node:fs';
import { ensureBpffs } from '../bpf/bpffs.js';
import { detach, detachAllFrom, findAttachedCgroups, programStatus, sockmeshAttachments } from '../bpf/attach.js';
import { cgroup2Mount } from '../bpf/cgroup.js';
import { loadAndPin } from '../bpf/load.js';
import { InstanceMaps } from '../bpf/maps.js';
import { isFullyPinned, missingPins, unpin, type PinLayout } from '../bpf/pins.js';
import { objectSha256 } from '../bpf/programs.js';
import { recoverInterruptedUpgrade, upgradePrograms, type UpgradeResult } from '../bpf/upgrade.js';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { nameTable } from '../util/names.js';
import type { InstanceRecord } from './record.js';
import { requireSameMounts } from './view.js';

/** Refuses to attach a second set of programs to a cgroup that already has sockmesh's. */
async function refuseStacking(layout: PinLayout, cgroup: string, instance: string): Promise<void> {
  const ours = new Set(programStatus(layout, undefined).map((p) => p.id));
  const foreign = (await sockmeshAttachments(cgroup)).filter((a) => !ours.has(a.id));
  if (foreign.length) {
    throw new UserError(Codes.STACKED, `${cgroup} already has sockmesh programs attached that instance "${instance}" does not hold (${foreign.map((a) => `${a.name} id ${a.id}`).join(', ')}): another instance, or pins that were removed. Run sockmesh down for the instance that attached them (down finds them through the cgroup); sockmesh never stacks a second set`);
  }
}

/**
 * Loads the instance's programs and maps (no complete pins yet) or adopts the pinned ones, and
 * upgrades live programs that differ from this object in place. Attaches nothing; a fresh load
 * that fails half-way is removed again.
 */
export async function loadOrAdopt(o: { instance: string; layout: PinLayout; cgroup: string; objectPath: string; prev: InstanceRecord | undefined; detached?: boolean }):
  Promise<{ maps: InstanceMaps; created: boolean; upgraded: UpgradeResult['replaced'] }> {
  const { layout, cgroup, instance, prev } = o;
  requireSameMounts(prev, 'attach BPF programs');
  await ensureBpffs();
  if (existsSync(layout.root)) recoverInterruptedUpgrade(layout);
  const created = !isFullyPinned(layout);
  // Pins of an older version that is still running (its programs attached): that version's object
  // lacks maps or programs this one needs, and an in-place upgrade cannot add them. Removing the
  // pins would detach everything and drop the spliced sockets' queued data: refused instead.
  if (created && prev?.mode === 'ebpf' && existsSync(layout.root) && programStatus(layout, cgroup).some((p) => p.attached)) {
    throw new SockmeshError(Codes.INSTANCE_CONFLICT, `instance "${instance}" runs an older sockmesh whose BPF object lacks ${missingPins(layout).join(', ')}: `
      + `an in-place upgrade cannot add them. Keep the running version, or run sockmesh down --instance ${instance} and up again (capture stops in between).`);
  }
  if (created) {
    if (existsSync(layout.root)) unpin(layout); // a partial pin dir from an interrupted run
    await loadAndPin(layout, o.objectPath);
  }
  let maps: InstanceMaps | undefined;
  try {
    if (!o.detached) await refuseStacking(layout, cgroup, instance);
    // A live instance whose programs differ from this object's: replaced in place first. Only
    // checked (a full load of the object) when the object is not the one the record names.
    const current = existsSync(o.objectPath) && prev?.objectSha256 === objectSha256(o.objectPath);
    const upgraded = created || current ? [] : (await upgradePrograms(layout, cgroup, o.objectPath)).replaced;
    maps = new InstanceMaps(layout);
    // splice: auto's per-service memory is the replaced programs' format: the new ones learn afresh.
    if (upgraded.length) for (const id of Object.values(prev?.serviceIds ?? nameTable<number>())) maps.svcAuto.set(id, { nagleClients: 0, bulk: 0, observed: 0 });
    return { maps, created, upgraded };
  } catch (err) {
    maps?.close();
    if (created) {
      await detach(layout, cgroup);
      unpin(layout);
    }
    throw err;
  }
}

/**
 * Removes an eBPF instance from what the kernel shows: every sockmesh program on its cgroups is
 * detached (found by name, so this works without pins), the sk_msg program through the pins when
 * they exist, then the pins. Throws when something stays attached.
 */
export async function removeInstance(layout: PinLayout, cgroup: string | undefined, instance: string): Promise<{ detached: string[]; pinsRemoved: boolean }> {
  const pinned = existsSync(layout.root);
  const mount = cgroup2Mount();
  // Without a record, find where the pinned programs are attached.
  const cgroups = cgroup ? [cgroup] : pinned && mount ? await findAttachedCgroups(layout, mount) : [];
  const detached: string[] = [];
  for (const cg of cgroups) detached.push(...(await detachAllFrom(cg, instance)));
  if (pinned) {
    const errors = await detach(layout, undefined);
    if (errors.length) {
      throw new SockmeshError(Codes.ATTACH, `could not detach every program of "${instance}"; the pins are kept so you can retry`, { cause: errors[0] });
    }
    unpin(layout);
  }
  return { detached, pinsRemoved: pinned };
}
