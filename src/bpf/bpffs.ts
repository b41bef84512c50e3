// The BPF filesystem: where every sockmesh instance pins its programs and maps.
import { mkdirSync, readFileSync } from 'node:fs';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { execTool } from '../util/exec.js';

export const BPFFS = '/sys/fs/bpf';

function mountedFsType(path: string): string | undefined {
  const lines = readFileSync('/proc/self/mounts', 'utf8').split('\n');
  let type: string | undefined;
  for (const line of lines) {
    const [, mnt, fstype] = line.split(' ');
    if (mnt === path) type = fstype; // the last mount on a path is the visible one
  }
  return type;
}

/** Mounts bpffs at /sys/fs/bpf when nothing is mounted there; fails if something else is. */
export async function ensureBpffs(): Promise<void> {
  const type = mountedFsType(BPFFS);
  if (type === 'bpf') return;
  if (type !== undefined) {
    throw new SockmeshError(Codes.BPFFS, `${BPFFS} holds a ${type} mount, not bpffs`);
  }
  mkdirSync(BPFFS, { recursive: true });
  const r = await execTool('mount', ['-t', 'bpf', 'bpf', BPFFS]);
  if (r.code !== 0) {
    throw new SockmeshError(Codes.BPFFS, `cannot mount bpffs at ${BPFFS}: ${r.stderr.trim()}`);
  }
}

/**
 * For an agent in a container: the node must have mounted bpffs itself (systemd does). A bpffs the
 * agent mounted inside its own mount namespace would go away with the container, and the pins —
 * the links that keep the programs attached — with it.
 */
export function requireNodeBpffs(): void {
  const type = mountedFsType(BPFFS);
  if (type === 'bpf') return;
  throw new UserError(Codes.BPFFS, `${BPFFS} is ${type ? `a ${type} mount` : 'not mounted'}: with --kubernetes the node must have bpffs mounted there (systemd mounts it by default; else \`mount -t bpf bpf /sys/fs/bpf\` on the node) and the DaemonSet mounts it in; a bpffs mounted inside the agent's container would take the pins with it when the container ends`);
}

export function pinRoot(instance: string): string {
  return `${BPFFS}/sockmesh-${instance}`;
}
