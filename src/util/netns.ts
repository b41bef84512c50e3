// Facts about a network namespace, read with iproute2.
import { Codes, SockmeshError, UserError } from '../errors.js';
import { execTool } from './exec.js';

/** The namespace's own IPv4 addresses outside 127/8, as /32s (e.g. the pod IP). `netns` is a
 * name under /var/run/netns or a path such as /proc/PID/ns/net. */
export async function localAddresses(netns: string): Promise<string[]> {
  const r = netns.startsWith('/')
    ? await execTool('nsenter', [`--net=${netns}`, 'ip', '-j', '-4', 'addr', 'show'])
    : await execTool('ip', ['-n', netns, '-j', '-4', 'addr', 'show']);
  if (r.code !== 0) {
    if (/No such file|Cannot open network namespace|cannot open/.test(r.stderr)) throw new UserError(Codes.USAGE, `no network namespace "${netns}"`);
    throw new SockmeshError(Codes.SYSCALL, `ip -n ${netns} addr show failed: ${r.stderr.trim()}`);
  }
  const links = JSON.parse(r.stdout || '[]') as Array<{ addr_info?: Array<{ local?: string }> }>;
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? ''))
    .filter((a) => a && !a.startsWith('127.'))
    .map((a) => `${a}/32`);
}
