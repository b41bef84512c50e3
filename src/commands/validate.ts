import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { parseConfigText, readConfigFile } from '../config/load.js';
import { checkMode } from '../config/validate/index.js';
import { ConfigError, Codes, UserError, describe } from '../errors.js';
import { emit, type Out } from './output.js';

interface FileResult {
  file: string;
  valid: boolean;
  /** Every problem with its field path (empty when valid). */
  problems: Array<{ path: string; message: string }>;
  services?: number;
  pods?: number;
  peerAuthentications?: number;
  authorizationPolicies?: number;
  /** What the file says that sockmesh takes but does not enforce. */
  notices?: string[];
}

/** One file checked as `up` and the agent would check it, without touching the kernel. */
function check(file: string, mode: 'ebpf' | 'iptables' | undefined): FileResult {
  try {
    const text = file === '-' ? readFileSync(0, 'utf8') : readConfigFile(file);
    const cfg = parseConfigText(text, file === '-' ? '(standard input)' : file);
    if (mode) checkMode(cfg, mode, file);
    return {
      file, valid: true, problems: [], services: cfg.services.length, pods: cfg.pods.length,
      peerAuthentications: cfg.peerAuthentications.length, authorizationPolicies: cfg.authorizationPolicies.length, notices: cfg.notices ?? [],
    };
  } catch (e) {
    if (e instanceof ConfigError) return { file, valid: false, problems: e.issues };
    if (e instanceof UserError) return { file, valid: false, problems: [{ path: '', message: describe(e) }] };
    throw e;
  }
}

function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

export function register(program: Command, out: () => Out): void {
  program
    .command('validate')
    .description('check config files as up and the agent would, without touching the kernel: every problem with its field path, exit 2 if any')
    .argument('<file...>', 'config files (- for standard input)')
    .option('--mode <mode>', 'also check what this capture mode cannot express (ebpf | iptables)')
    .option('--json', 'print the results as JSON')
    .addHelpText('after', `
Like haproxy -c, promtool check or istioctl analyze: nothing is applied and no root is needed.
A file may carry Istio PeerAuthentication and AuthorizationPolicy documents after the config
(multi-document YAML, --- between them); they are checked with Istio's semantics.
Exit 0 when every file is valid, 2 when any is not.

  sockmesh validate mesh.yaml
  sockmesh validate --json a.yaml b.yaml`)
    .action((files: string[], opts: { mode?: string; json?: boolean }) => {
      if (opts.mode !== undefined && opts.mode !== 'ebpf' && opts.mode !== 'iptables') throw new UserError(Codes.USAGE, `--mode must be ebpf or iptables, got ${JSON.stringify(opts.mode.slice(0, 40))}`);
      const results = files.map((f) => check(f, opts.mode as 'ebpf' | 'iptables' | undefined));
      emit(out(), { valid: results.every((r) => r.valid), files: results }, () => results.map((r) => (r.valid
        ? [`${r.file}: valid (${count(r.services!, 'service')}, ${count(r.pods!, 'pod')}${r.peerAuthentications ? `, ${count(r.peerAuthentications, 'PeerAuthentication')}` : ''}${r.authorizationPolicies ? `, ${count(r.authorizationPolicies, 'AuthorizationPolicy', 'AuthorizationPolicies')}` : ''})`,
          ...(r.notices ?? []).map((n) => `  note: ${n}`)].join('\n')
        : [`${r.file}: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`, ...r.problems.map((p) => `  ${p.path ? `${p.path}: ` : ''}${p.message}`)].join('\n'))).join('\n'));
      if (!results.every((r) => r.valid)) process.exitCode = 2;
    });
}
