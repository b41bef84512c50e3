// One service's redirect switch, flipped on a live instance: new connections only, nothing else is
// touched. Written to the kernel by the mode's instance and kept in the record; on an instance a
// stopped node agent runs, kept as the agent's override as well.
import { pinLayout } from '../bpf/pins.js';
import { defaultObjectPath } from '../bpf/programs.js';
import type { MeshConfig } from '../config/model.js';
import { Codes, UserError } from '../errors.js';
import { requireRoot } from '../util/root.js';
import type { CaptureInstance } from './capture.js';
import { EbpfInstance } from './ebpf.js';
import { IptablesInstance } from './iptables.js';
import { withInstanceLock } from './lock.js';
import { checkInstanceName } from './name.js';
import { OverrideStore } from './overrides.js';
import { writeRecord, type InstanceRecord } from './record.js';
import { requireRecord } from './status.js';

/**
 * Flips one service's redirect switch; new connections only, nothing else is touched. On an
 * instance a node agent runs (stopped now), the switch is also kept as the agent's override, so
 * the agent's next start keeps it instead of undoing it (`service reset` drops it).
 */
export async function setServiceRedirect(instanceName: string, service: string, redirect: boolean): Promise<{ changed: boolean; override: boolean }> {
  requireRoot();
  requireRecord(instanceName); // an unknown instance is an error before any lock file is made
  return withInstanceLock(checkInstanceName(instanceName), async () => {
    const rec = requireRecord(instanceName);
    const r = await applyServiceRedirect(rec, service, redirect);
    if (rec.agent) {
      const store = OverrideStore.forInstance(rec.instance);
      store.load();
      store.set(service, redirect);
    }
    return { changed: r.changed, override: rec.agent === true };
  });
}

/**
 * Drops the override of a service on an instance whose agent is stopped: the service takes the
 * value of the agent's config file again (read now), or, when the file cannot be read, the agent
 * applies it at its next start.
 */
export async function resetServiceOverride(instanceName: string, service: string, fromSource: (configSource: string) => MeshConfig | undefined): Promise<{ hadOverride: boolean; changed: boolean; note?: string }> {
  requireRoot();
  const rec0 = requireRecord(instanceName);
  if (!rec0.agent) throw new UserError(Codes.INSTANCE_MISSING, `instance "${rec0.instance}" is not run by sockmesh agent: it has no overrides (sockmesh service enable|disable sets the switch itself)`);
  return withInstanceLock(checkInstanceName(instanceName), async () => {
    const rec = requireRecord(instanceName);
    const store = OverrideStore.forInstance(rec.instance);
    store.load();
    if (!store.reset(service)) return { hadOverride: false, changed: false };
    const fromFile = fromSource(rec.configSource)?.services.find((s) => s.name === service);
    if (!fromFile) return { hadOverride: true, changed: false, note: `the agent applies the config file's switch of "${service}" when it starts` };
    return { hadOverride: true, changed: (await applyServiceRedirect(rec, service, fromFile.redirect)).changed };
  });
}

/** One service's switch written to the kernel (maps or rules) and the record. */
async function applyServiceRedirect(rec: InstanceRecord, service: string, redirect: boolean): Promise<{ changed: boolean }> {
  const svc = rec.config.services.find((s) => s.name === service);
  if (!svc) {
    const known = rec.config.services.map((s) => s.name).join(', ') || '(none)';
    throw new UserError(Codes.SERVICE_UNKNOWN, `no service "${service}" in instance "${rec.instance}" (services: ${known})`);
  }
  const config: MeshConfig = {
    ...rec.config,
    services: rec.config.services.map((s) => (s.name === service ? { ...s, redirect } : s)),
  };
  const capture: CaptureInstance = rec.mode === 'iptables'
    ? IptablesInstance.open({ instance: rec.instance, netns: rec.netns, perPod: rec.podNetns !== undefined, prev: rec })
    // The agent skips pods it cannot find; `up`'s instance is all or nothing.
    : EbpfInstance.adopt({
      instance: rec.instance, layout: pinLayout(rec.pinRoot), cgroup: rec.cgroup!, netns: rec.netns, objectPath: defaultObjectPath(), prev: rec,
      unresolved: rec.agent ? 'skip' : 'refuse',
    });
  let changed = svc.redirect !== redirect;
  let ids = rec.serviceIds;
  let fields: Partial<InstanceRecord> = {};
  try {
    if (capture instanceof EbpfInstance) {
      // Only the maps: nothing to attach, and no endpoint left.
      const written = await capture.write(config);
      ids = written.ids;
      changed = Object.keys(written.changes).length > 0;
    } else {
      await capture.apply(config);
      fields = capture.recordFields();
    }
  } finally {
    capture.close();
  }
  writeRecord({ ...rec, ...fields, config, serviceIds: ids, updatedAt: new Date().toISOString() });
  return { changed };
}
