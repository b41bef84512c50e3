import type { Command } from 'commander';
import { isLive, request } from '../control/client.js';
import { socketPath } from '../control/protocol.js';
import { checkInstanceName } from '../instance/name.js';
import { status, type InstanceStatus } from '../instance/status.js';
import type { Overrides } from '../instance/overrides.js';
import { endpointName } from '../config/constants.js';
import { emit, table, type Out } from './output.js';

export function register(program: Command, out: () => Out): void {
  program
    .command('status')
    .description('show an instance: mode, programs and where they are attached, services, counters')
    .option('--instance <name>', 'instance name', 'default')
    .option('--json', 'print as JSON (instance, mode, cgroup, netns, programs, services, counters)')
    .action(async (opts: { instance: string; json?: boolean }) => {
      // A running agent answers itself (it adds its source, overrides and last apply).
      const sock = socketPath(checkInstanceName(opts.instance));
      const st = (await isLive(sock) ? await request(sock, { op: 'status' }) : await status(opts.instance)) as InstanceStatus & { agent?: AgentInfo };
      const agent = st.agent;
      emit(out(), st, () => [
        `instance  ${st.instance}`,
        `mode      ${st.mode}`,
        st.mode === 'ebpf' ? `cgroup    ${st.cgroup}` : `netns     ${st.netns ?? '(current)'}`,
        ...(st.mode === 'ebpf' ? [`pins      ${st.pinRoot}`, `spliced   ${st.splicedSockets} sockets in the sockhash`] : []),
        `config    ${st.configSource}`,
        ...(agent ? [
          `agent     pid ${agent.pid}, ${agent.ready ? 'ready' : 'not ready'}, source ${agent.source.stale ? `STALE (${agent.source.message ?? ''})` : 'ok'}` +
            `${agent.lastApply ? `, last apply ${agent.lastApply.at} (${agent.lastApply.ms.toFixed(1)} ms)` : ''}`,
          ...(agent.identities?.length ? [`identities ${agent.identities.map((i) => `${i.pod}: ${i.spiffeId} (serial ${i.serial}, expires ${i.notAfter})`).join('; ')}`] : []),
          ...(agent.ca ? [`mesh CA   ${agent.ca.store}; roots expire ${agent.ca.rootsExpire.join(', ')}${agent.ca.signerExpires ? `; this node's signer expires ${agent.ca.signerExpires}` : ''}`] : []),
          ...(agent.sidecars?.length ? [`sidecars  policy version ${agent.policyVersion}: ${agent.sidecars.map((c) => `${c.id} runs ${c.agentVersion === agent.policyVersion ? 'it' : `agent version ${c.agentVersion}`}${c.refused === agent.policyVersion ? ', refused it (see the sidecar\'s log)' : ''} (its version ${c.version}, asked ${c.seenAt})`).join('; ')}`] : []),
        ] : []),
        ...(st.pods?.length ? ['', table([['POD', 'ID', 'NETNS COOKIE', 'REWRITES', 'INBOUND', 'SPLICED SOCKETS', 'SPLICED MSGS', 'HOPS', 'AUTO STACK CONNS', 'NAGLE MSGS'],
          ...st.pods.map((p) => [p.name, String(p.podId), p.netnsCookie, String(p.counters.connectRewrites),
            `${p.counters.inboundToSidecar}${p.inboundListener ? '' : ' (no listener)'}`, String(p.counters.sockmapInserts),
            String(p.counters.sockmapRedirects), String(p.counters.hopSplices), String(p.counters.autoStackConnects), String(p.counters.msgNagleSender)])])] : []),
        ...(st.programs.length
          ? ['', table([['PROGRAM', 'ID', 'HOOK', 'ATTACHED'], ...st.programs.map((p) => [p.name, String(p.id), p.attachType, p.namespaces !== undefined ? (p.namespaces ? `${p.namespaces} pod namespace(s)` : 'no pod namespace') : p.attached ? 'yes' : 'NO'])])]
          : []),
        '',
        table([['SERVICE', 'ADDRESSES', 'PORTS', 'REDIRECT', 'MODE', 'SPLICE'], ...st.services.map((s) => [
          s.name, s.addresses.join(',') || '*', s.ports.join(','), `${s.redirect ? 'on' : 'off'}${agent?.overrides[s.name] ? ' (override)' : ''}`,
          s.mode === 'kernel' ? `kernel (${s.protocol === 'udp' ? 'udp, ' : ''}${s.endpoints?.length ?? 0} endpoints${s.affinity ? ', client affinity' : ''}${s.terminateOnRemove ? ', terminateOnRemove' : ''})` : 'sidecar',
          s.mode === 'kernel' ? '-' : s.auto ? `auto (${s.auto.bulk ? 'bulk: on the stack' : `Nagle-at-connect clients: ${s.auto.nagleClients}`})` : s.splice])]),
        ...(st.services.some((s) => s.endpoints?.length) ? ['', table([['SERVICE', 'ENDPOINT', 'WEIGHT', 'CONNECTIONS'],
          ...st.services.flatMap((s) => (s.endpoints ?? []).map((e) => [s.name, endpointName(e), String(e.weight), e.connections === undefined ? '-' : String(e.connections)]))])] : []),
        '',
        table([['COUNTER', 'VALUE'], ...Object.entries(st.counters).map(([k, v]) => [k, String(v)])]),
      ].join('\n'));
    });
}

interface AgentInfo {
  pid: number;
  ready: boolean;
  source: { path: string; stale: boolean; message?: string };
  overrides: Overrides;
  lastApply?: { at: string; ms: number };
  /** The policy version the governance sidecars get, and the sidecars that asked for it. */
  policyVersion?: number;
  sidecars?: Array<{ id: string; version: number; agentVersion: number; refused?: number; seenAt: string }>;
  /** Each pod's certificate (never its key). */
  identities?: Array<{ pod: string; spiffeId: string; serial: string; notAfter: string }>;
  ca?: { store: string; rootsExpire: string[]; signerExpires?: string };
}
