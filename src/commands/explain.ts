import type { Command } from 'commander';
import { explain } from '../instance/explain.js';
import { checkInstanceName } from '../instance/name.js';
import { requireRoot } from '../util/root.js';
import { Codes, UserError } from '../errors.js';
import { emit, type Out } from './output.js';

function id(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,10}$/.test(v) || Number(v) > 0xffffffff) throw new UserError(Codes.USAGE, `${flag} must be a number 0-4294967295, got ${JSON.stringify(v.slice(0, 40))}`);
  return Number(v);
}

export function register(program: Command, out: () => Out): void {
  program
    .command('explain')
    .description('which rule decides a connection from a pod to DST:PORT, read from the live maps (eBPF) or the config behind the rules (iptables)')
    .argument('<destination>', 'IPV4:PORT or [IPV6]:PORT the application would connect to')
    .option('--instance <name>', 'instance name', 'default')
    .option('--pod <name>', 'the pod making the connection (needed when the instance meshes several)')
    .option('--uid <uid>', 'the connecting process\'s uid (the sidecar\'s uid shows what the sidecar\'s own connections do)', '0')
    .option('--gid <gid>', 'its gid (default: the uid)')
    .option('--source <addr>', 'the address the connecting socket is bound to (127.0.0.6 or ::6: the sidecar\'s inbound passthrough)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Goes through the same checks as the kernel, in its order: excluded ports, the sidecar's identity,
traffic inside the pod, excluded CIDRs, the service and its switch, included ports and CIDRs; then,
for a captured connection, whether its socket pair would be spliced. Also says what the other mode
would do. Reads only; an agent may run.

  sockmesh explain --pod reviews-7d9 10.96.0.20:9080
  sockmesh explain --pod reviews-7d9 --uid 1337 10.96.0.20:9080 --json
  sockmesh explain --pod reviews-7d9 --uid 1337 --source 127.0.0.6 10.244.1.7:9080`)
    .action(async (destination: string, opts: { instance: string; pod?: string; uid: string; gid?: string; source?: string }) => {
      requireRoot();
      const res = await explain({ instance: checkInstanceName(opts.instance), pod: opts.pod, destination, uid: id('--uid', opts.uid)!, gid: id('--gid', opts.gid), source: opts.source });
      emit(out(), res, () => [
        `${res.destination} from pod ${res.pod} (uid ${res.uid}), ${res.mode} mode${res.slot !== undefined ? `, slot ${res.slot}` : ''}:`,
        `  ${res.verdict === 'direct' ? 'NOT captured' : `captured (${res.verdict === 'sidecar-inbound' ? 'inbound' : 'outbound'})`}: ${res.rule}`,
        `  goes to ${res.goesTo}`,
        ...(res.service ? [`  service ${res.service.name} (id ${res.service.id}, redirect ${res.service.redirect} ${res.service.redirectFrom === 'override' ? `by override: sockmesh service reset ${res.service.name} returns it to the config's` : 'from the config'}, splice ${res.service.splice})`] : []),
        ...(res.splice ? [`  socket pair: ${res.splice}`] : []),
        ...(res.security ? ['  then, from the sidecar:', ...res.security.upstreams.map((u) => `    - to ${u.address}: ${u.detail}${u.authorization ? `; authorization at the server: ${u.authorization}` : ''}`)] : []),
        '  checks:',
        ...res.checks.map((c) => `    - ${c}`),
        ...(res.rules ? [`  rules in ${res.rules.netns ?? 'this namespace'}: ${res.rules.inPlace ? `in place (${res.rules.rules}, as the config generates them)` : `DIFFER from the config: ${res.rules.missing.length} missing, ${res.rules.extra.length} not from it`}`,
          ...res.rules.missing.map((l) => `    missing: ${l}`), ...res.rules.extra.map((l) => `    extra:   ${l}`)] : []),
        `  in ${res.other.mode} mode: ${res.other.verdict === 'direct' ? 'not captured' : 'captured'} (${res.other.note})`,
      ].join('\n'));
    });
}
