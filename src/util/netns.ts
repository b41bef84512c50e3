// Facts about a network namespace, read with iproute2.
import { Codes, SockmeshError, UserError } from '../errors.js';
import { execTool } from './exec.js';

/** The namespace's own addresses, as host routes (/32, /128: e.g. the pod IP): IPv4 outside 127/8,
 * IPv6 of global scope (not ::1, not link-local). `netns` is a name under /var/run/netns or a path
 * such as /proc/PID/ns/net. */
export async function localAddresses(netns: string): Promise<string[]> {
  const r = netns.startsWith('/')
    ? await execTool('nsenter', [`--net=${netns}`, 'ip', '-j', 'addr', 'show'])
    : await execTool('ip', ['-n', netns, '-j', 'addr', 'show']);
  if (r.code !== 0) {
    if (/No such file|Cannot open network namespace|cannot open/.test(r.stderr)) throw new UserError(Codes.USAGE, `no network namespace "${netns}"`);
    throw new SockmeshError(Codes.SYSCALL, `ip -n ${netns} addr show failed: ${r.stderr.trim()}`);
  }
  const links = JSON.parse(r.stdout || '[]') as Array<{ addr_info?: Array<{ family?: string; local?: string; scope?: string }> }>;
  return links.flatMap((l) => l.addr_info ?? []).flatMap((a) => {
    if (!a.local) return [];
    if (a.family === 'inet') return a.local.startsWith('127.') ? [] : [`${a.local}/32`];
    return a.family === 'inet6' && a.scope === 'global' ? [`${a.local}/128`] : [];
  });
}
