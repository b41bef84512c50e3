// Which capture mode the agent runs its instance in: a restart keeps the mode the kernel holds;
// a fresh start takes eBPF mode when the kernel can run it (probed by loading), else iptables
// mode for every pod, unless the operator asked for one of them.
import { missingFeature } from '../bpf/probe.js';
import { Codes, UserError } from '../errors.js';
import type { InstanceRecord, Mode } from '../instance/record.js';
import type { Logger } from '../util/log.js';

export async function chooseMode(instance: string, wanted: 'auto' | Mode, prev: InstanceRecord | undefined, log: Logger): Promise<Mode> {
  if (prev) {
    if (prev.mode === 'iptables' && !prev.podNetns) {
      throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" was set up by sockmesh up in iptables mode; run sockmesh down --instance ${instance} first, or pick another --instance`);
    }
    if (wanted !== 'auto' && wanted !== prev.mode) {
      throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" runs in ${prev.mode} mode; run sockmesh down --instance ${instance} first to start it in ${wanted} mode`);
    }
    return prev.mode; // a restart: the kernel has not changed under it
  }
  if (wanted === 'iptables') return 'iptables';
  const missing = await missingFeature();
  if (!missing) return 'ebpf';
  const why = `eBPF mode needs ${missing.feature}, which this kernel does not offer (${missing.detail})`;
  if (wanted === 'ebpf') throw new UserError(Codes.NOT_SUPPORTED, `${why}; without --mode ebpf the agent runs iptables mode for every pod instead`);
  log.warn({ feature: missing.feature, detail: missing.detail }, `${why}: running iptables mode for every pod`);
  return 'iptables';
}
