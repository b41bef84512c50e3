// What a config asks that a capture mode cannot express.
import { ConfigError, type ConfigIssue } from '../../errors.js';
import type { MeshConfig } from '../model.js';

/**
 * What a config asks that the chosen capture mode cannot express, by field path (empty when it
 * fits). eBPF mode takes every valid config; iptables mode meshes one namespace.
 */
export function modeIssues(cfg: MeshConfig, mode: 'ebpf' | 'iptables'): ConfigIssue[] {
  if (mode !== 'iptables') return [];
  const issues: ConfigIssue[] = [];
  if (cfg.pods.length) issues.push({ path: 'pods', message: 'iptables mode meshes one pod, the namespace given with --netns; leave pods out' });
  return issues;
}

/** Throws a ConfigError when the config does not fit the mode (see modeIssues). */
export function checkMode(cfg: MeshConfig, mode: 'ebpf' | 'iptables', source: string): void {
  const issues = modeIssues(cfg, mode);
  if (issues.length) throw new ConfigError(`${source} (for ${mode} mode)`, issues);
}
