import { Option, type Command } from 'commander';
import { up } from '../instance/lifecycle.js';
import { loadConfig } from '../config/load.js';
import { checkMode } from '../config/validate/index.js';
import { natSave } from '../iptables/apply.js';
import { upRestore } from '../iptables/rules.js';
import { Codes, UserError } from '../errors.js';
import { emit, type Out } from './output.js';

interface UpOpts {
  bpfObject?: string;
  mode: 'ebpf' | 'iptables';
  cgroup?: string;
  netns?: string;
  config?: string;
  instance: string;
  dryRun?: boolean;
  json?: boolean;
}

export function register(program: Command, out: () => Out): void {
  program
    .command('up')
    .description('start capture for an instance, update it in place, or switch its mode')
    .addOption(new Option('--mode <mode>', 'capture mode').choices(['ebpf', 'iptables']).default('ebpf'))
    .option('--cgroup <dir>', 'eBPF mode: cgroup2 directory the programs attach to (never the cgroup2 root): the one pod\'s cgroup, or the parent of the config\'s pods')
    .option('--netns <name>', 'iptables mode: network namespace that gets the rules (default: the current one); eBPF mode without pods: the pod\'s namespace (its connections only, its own addresses count as local)')
    .option('--config <file>', 'YAML config (default: the embedded default config)')
    .option('--instance <name>', 'instance name; eBPF pins live under /sys/fs/bpf/sockmesh-<name>', 'default')
    .option('--bpf-object <file>', 'eBPF mode: the BPF object to load (default: the one sockmesh ships); a live instance running other programs is upgraded in place')
    .option('--dry-run', 'iptables mode: print the iptables-restore input instead of applying it')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Validates the config first: an invalid config changes nothing. Running up twice is harmless;
running it with a new config rewrites only what differs. Running it with another --mode on a live
instance switches the same processes to the other capture path (new connections only).`)
    .action(async (opts: UpOpts) => {
      const config = loadConfig(opts.config);
      if (opts.dryRun) {
        if (opts.mode !== 'iptables') throw new UserError(Codes.USAGE, '--dry-run is for --mode iptables');
        if (opts.netns !== undefined && !opts.netns.trim()) throw new UserError(Codes.USAGE, '--netns is empty: give a value or leave the option out');
        checkMode(config, 'iptables', opts.config ?? '(embedded default)');
        process.stdout.write(upRestore(config, await natSave(opts.netns), opts.instance));
        // The IPv6 set where ip6tables' nat table works there (as up applies it).
        const save6 = await natSave(opts.netns, 6).catch(() => undefined);
        if (save6 !== undefined) process.stdout.write(`# ip6tables-restore --noflush\n${upRestore(config, save6, opts.instance, 6)}`);
        return;
      }
      const res = await up({ instance: opts.instance, mode: opts.mode, cgroup: opts.cgroup, netns: opts.netns, config, configSource: opts.config ?? '(embedded default)', objectPath: opts.bpfObject });
      emit(out(), res, () => {
        const verb = res.switchedFrom ? `switched from ${res.switchedFrom} to ${res.mode}` : res.created ? `started in ${res.mode} mode` : `updated (${res.mode} mode)`;
        const changed = Object.entries(res.changes).map(([m, c]) => `${m} +${c.put}/-${c.del}`).join(', ');
        const upgraded = res.upgraded?.length ? `\nprograms upgraded in place: ${res.upgraded.map((u) => `${u.name} ${u.from} -> ${u.to}`).join(', ')}` : '';
        const terminated = res.terminated ? `\nclosed ${res.terminated} connection(s) of removed endpoints (terminateOnRemove)` : '';
        const notes = (res.notes ?? []).map((n) => `\nnote: ${n}`).join('');
        return `sockmesh instance "${res.instance}" ${verb}${changed ? ` (${changed})` : ''}${upgraded}${terminated}${notes}`;
      });
    });
}
