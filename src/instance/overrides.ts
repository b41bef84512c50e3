// Per-service switch overrides made through the running agent (`sockmesh service enable|disable`):
// layered over the config file, kept in /run/sockmesh/<instance>.overrides.json across agent
// restarts until `sockmesh service reset`. Written atomically (temp file + rename).
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { MeshConfig } from '../config/model.js';
import { STATE_DIR } from './record.js';
import { hasName, nameTable } from '../util/names.js';

/** Overrides by service name: a null-prototype table (src/util/names.ts). */
export type Overrides = Record<string, { redirect: boolean }>;

export class OverrideStore {
  private data: Overrides = nameTable();

  constructor(readonly path: string) {}

  static forInstance(instance: string, dir = STATE_DIR): OverrideStore {
    return new OverrideStore(`${dir}/${instance}.overrides.json`);
  }

  /** Loads the file; a missing file is no overrides, a damaged one is reported and ignored. */
  load(): { damaged?: string } {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      this.data = nameTable();
      return {};
    }
    try {
      const parsed = JSON.parse(text) as unknown;
      const out: Overrides = nameTable();
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        for (const [name, v] of Object.entries(parsed as Record<string, unknown>)) {
          if (typeof v === 'object' && v !== null && typeof (v as { redirect?: unknown }).redirect === 'boolean') out[name] = { redirect: (v as { redirect: boolean }).redirect };
        }
      }
      this.data = out;
      return {};
    } catch (e) {
      this.data = nameTable();
      return { damaged: (e as Error).message };
    }
  }

  all(): Overrides {
    return nameTable(this.data);
  }

  set(name: string, redirect: boolean): void {
    this.data[name] = { redirect };
    this.save();
  }

  /** Removes a service's override; false when it had none. */
  reset(name: string): boolean {
    if (!hasName(this.data, name)) return false;
    delete this.data[name];
    this.save();
    return true;
  }

  /** Deletes the file (the instance is gone). */
  remove(): void {
    this.data = nameTable();
    rmSync(this.path, { force: true });
  }

  private save(): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.data, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, this.path);
  }
}

/** The config with the overrides applied (services absent from the config are left out). */
export function applyOverrides(cfg: MeshConfig, overrides: Overrides): MeshConfig {
  let any = false;
  for (const _ in overrides) { any = true; break; }
  if (!any) return cfg;
  return { ...cfg, services: cfg.services.map((s) => (hasName(overrides, s.name) ? { ...s, redirect: overrides[s.name].redirect } : s)) };
}
