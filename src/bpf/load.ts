// Loading the BPF object and pinning its programs and maps (bpftool prog loadall): one instance's
// data path, not attached yet. A load that fails names the kernel feature it lacks where it can.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { Codes, NotSupportedError, SockmeshError } from '../errors.js';
import { bpftool, BpftoolError } from './bpftool.js';
import type { PinLayout } from './pins.js';
import { PROGRAMS } from './programs.js';

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

