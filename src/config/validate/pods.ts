// A meshed pod: its cgroup, network namespace, own addresses and overrides of the node's sidecar
// and capture settings; and what two pods may not share.
import { posix } from 'node:path';
import type { CaptureConfig, PodConfig, SidecarConfig } from '../model.js';
import { captureBlock, sidecar } from './capture.js';
import { join, quote, type Checker } from './checker.js';
import { NAMESPACE_RE, SERVICE_ACCOUNT_RE } from '../constants.js';

export function pod(c: Checker, path: string, raw: unknown, node: { sidecar: SidecarConfig; capture: CaptureConfig }): PodConfig | undefined {
  const o = c.object(path, raw, ['name', 'cgroup', 'netns', 'addresses', 'sidecar', 'capture', 'namespace', 'serviceAccount', 'labels']);
  if (!o) return undefined;
  const name = c.name(join(path, 'name'), o.name) ?? '';
  if (o.cgroup === undefined) c.fail(join(path, 'cgroup'), 'is required');
  const spelled = o.cgroup === undefined ? '' : c.nonEmptyString(join(path, 'cgroup'), o.cgroup) ?? '';
  if (spelled.split('/').includes('..')) c.fail(join(path, 'cgroup'), 'must not contain ".." (a pod cgroup lies below the instance\'s --cgroup)');
  // One spelling per directory (`./a/`, `a//`, `a` are one cgroup): compared and recorded so.
  const cgroup = spelled && normalizeCgroup(spelled);
  if (spelled && cgroup === '.') c.fail(join(path, 'cgroup'), 'names the instance\'s --cgroup itself: a pod\'s cgroup lies below it');
  if (o.netns === undefined) c.fail(join(path, 'netns'), 'is required (a name under /var/run/netns or a path such as /proc/PID/ns/net)');
  const netns = o.netns === undefined ? undefined : c.nonEmptyString(join(path, 'netns'), o.netns);
  if (netns !== undefined && !netns.startsWith('/') && !/^[A-Za-z0-9_.-]+$/.test(netns)) {
    c.fail(join(path, 'netns'), `must be a namespace name (letters, digits, '_', '.', '-') or an absolute path, got ${quote(netns)}`);
  }
  const addresses = o.addresses === undefined ? undefined : (c.array(join(path, 'addresses'), o.addresses) ?? [])
    .map((a, i) => c.ip(`${join(path, 'addresses')}[${i}]`, a))
    .filter((a): a is string => a !== undefined);
  const sc = o.sidecar === undefined ? node.sidecar : sidecar(c, o.sidecar, join(path, 'sidecar'), node.sidecar);
  const cap = o.capture === undefined ? node.capture : captureBlock(c, o.capture, [], [], join(path, 'capture'), node.capture);
  const namespace = o.namespace === undefined ? 'default' : c.match(join(path, 'namespace'), o.namespace, NAMESPACE_RE, 'a Kubernetes namespace (a DNS label)') ?? 'default';
  const serviceAccount = o.serviceAccount === undefined ? 'default' : c.match(join(path, 'serviceAccount'), o.serviceAccount, SERVICE_ACCOUNT_RE, 'a service account name (a DNS subdomain)') ?? 'default';
  const labels = o.labels === undefined ? {} : c.labels(join(path, 'labels'), o.labels);
  return { name, cgroup, netns, addresses, sidecar: sc, capture: cap, namespace, serviceAccount, labels };
}

/** A pod cgroup as one spelling: `./a/`, `a//b` and `a/./b/` are `a` and `a/b`. */
export function normalizeCgroup(cgroup: string): string {
  const n = posix.normalize(cgroup);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** What a pod's netns names, as one key: a name is its /var/run/netns path (/run is /var/run). */
export function netnsKey(netns: string): string {
  const path = posix.normalize(netns.startsWith('/') ? netns : `/var/run/netns/${netns}`);
  return path.startsWith('/run/') ? `/var${path}` : path;
}

/**
 * Two pods never share a name, a cgroup, a namespace or an address, compared as what they name:
 * a namespace name and its /var/run/netns path are one namespace (aliases only the kernel can tell
 * apart, such as two links to one file, are refused when the pods are found).
 */
export function podConflicts(c: Checker, pods: PodConfig[]): void {
  const seen = new Map<string, number>();
  for (const [field, of] of [['name', (p: PodConfig) => p.name], ['cgroup', (p: PodConfig) => p.cgroup], ['netns', (p: PodConfig) => (p.netns ? netnsKey(p.netns) : '')]] as const) {
    seen.clear();
    pods.forEach((p, i) => {
      const v = of(p);
      if (!v) return;
      const first = seen.get(v);
      if (first !== undefined) c.fail(`pods[${i}].${field}`, `${quote(field === 'netns' ? p.netns : v)} is also the ${field} of pods[${first}]${field === 'netns' && p.netns !== pods[first].netns ? ` (${quote(pods[first].netns)})` : ''}`);
      else seen.set(v, i);
    });
  }
  // A pod's own address names it in the kernel (sm_local_addrs): two pods cannot share one.
  const owners = new Map<string, number>();
  pods.forEach((p, i) => (p.addresses ?? []).forEach((a, j) => {
    const first = owners.get(a);
    if (first !== undefined && first !== i) c.fail(`pods[${i}].addresses[${j}]`, `${a} is also an address of pods[${first}] (${pods[first].name})`);
    else owners.set(a, i);
  }));
}
