import type { Command } from 'commander';
import { status } from '../agent/instance.js';
import { emit, table, type Out } from './output.js';

export function register(program: Command, out: () => Out): void {
  program
    .command('status')
    .description('show an instance: mode, programs and where they are attached, services, counters')
    .option('--instance <name>', 'instance name', 'default')
    .option('--json', 'print as JSON (instance, mode, cgroup, netns, programs, services, counters)')
    .action(async (opts: { instance: string; json?: boolean }) => {
      const st = await status(opts.instance);
      emit(out(), st, () => [
        `instance  ${st.instance}`,
        `mode      ${st.mode}`,
        st.mode === 'ebpf' ? `cgroup    ${st.cgroup}` : `netns     ${st.netns ?? '(current)'}`,
        ...(st.mode === 'ebpf' ? [`pins      ${st.pinRoot}`, `spliced   ${st.splicedSockets} sockets in the sockhash`] : []),
        `config    ${st.configSource}`,
        ...(st.programs.length
          ? ['', table([['PROGRAM', 'ID', 'HOOK', 'ATTACHED'], ...st.programs.map((p) => [p.name, String(p.id), p.attachType, p.attached ? 'yes' : 'NO'])])]
          : []),
        '',
        table([['SERVICE', 'ADDRESSES', 'PORTS', 'REDIRECT', 'SPLICE'], ...st.services.map((s) => [
          s.name, s.addresses.join(',') || '*', s.ports.join(','), s.redirect ? 'on' : 'off',
          s.auto ? `auto (${s.auto.splicing ? 'splicing' : 'not splicing'}, votes ${s.auto.votes})` : s.splice])]),
        '',
        table([['COUNTER', 'VALUE'], ...Object.entries(st.counters).map(([k, v]) => [k, String(v)])]),
      ].join('\n'));
    });
}
