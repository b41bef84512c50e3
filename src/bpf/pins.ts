// Where an instance's programs, maps and links are pinned: one bpffs directory per instance
// (progs/, maps/, links/), so plain bpftool can inspect it and removing it removes the instance.
import { existsSync, rmSync } from 'node:fs';
import * as bpf from '../../native/libbpf.js';
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

/** Removes the whole pin directory (programs stay alive only while something else holds them). */
export function unpin(layout: PinLayout): void {
  rmSync(layout.root, { recursive: true, force: true });
}

/** Runs fn with an fd of the pinned object at `path` (closed after). */
export function withFd<T>(path: string, fn: (fd: number) => T): T {
  const fd = bpf.objGet(path);
  try {
    return fn(fd);
  } finally {
    bpf.close(fd);
  }
}

