// Every annotation and label sockmesh reads on a Kubernetes object, in one place: its name, what it
// sets, and how its value is checked (a malformed one is a Problem, reported on the object, which
// keeps its last good state). The trimming of objects on arrival keeps exactly these. Pure.
import { parseCidr } from '../../net/addr.js';

/** The label that ties an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** sockmesh's own annotations on a Service. */
export const SERVICE_ANNOTATIONS = {
  /** "false": the per-service switch off (new connections go straight to the Service). */
  redirect: 'sockmesh.io/redirect',
  /** auto | always | never. */
  splice: 'sockmesh.io/splice',
  /** sidecar | kernel. */
  mode: 'sockmesh.io/mode',
  /** "true": a kernel-mode Service closes a removed endpoint's connections. */
  terminateOnRemove: 'sockmesh.io/terminate-on-remove',
  /** "<requests per second>[,burst=<n>]": the inbound rate limit (Istio has no field for it). */
  rateLimit: 'sockmesh.io/rate-limit',
} as const;

/** Whether a pod is meshed: the label sockmesh reads, and Istio's own marks. */
export const MESH_LABEL = 'sockmesh.io/mesh';
export const ISTIO_INJECT = 'sidecar.istio.io/inject';
export const ISTIO_STATUS = 'sidecar.istio.io/status';

const ISTIO_TRAFFIC = 'traffic.sidecar.istio.io/';

/** Istio's per-pod capture annotations (istio-init's flags), the capture field each sets, and its
 * value's form ('*': the wildcard is allowed). */
export const POD_ANNOTATIONS = [
  { annotation: `${ISTIO_TRAFFIC}includeInboundPorts`, field: 'includeInboundPorts', kind: 'ports', star: true },
  { annotation: `${ISTIO_TRAFFIC}excludeInboundPorts`, field: 'excludeInboundPorts', kind: 'ports', star: false },
  { annotation: `${ISTIO_TRAFFIC}includeOutboundPorts`, field: 'includeOutboundPorts', kind: 'ports', star: false },
  { annotation: `${ISTIO_TRAFFIC}excludeOutboundPorts`, field: 'excludeOutboundPorts', kind: 'ports', star: false },
  { annotation: `${ISTIO_TRAFFIC}includeOutboundIPRanges`, field: 'includeOutboundCIDRs', kind: 'cidrs', star: true },
  { annotation: `${ISTIO_TRAFFIC}excludeOutboundIPRanges`, field: 'excludeOutboundCIDRs', kind: 'cidrs', star: false },
] as const;

/** The annotations an object keeps when it is trimmed on arrival. */
export function keptAnnotation(k: string): boolean {
  return k.startsWith('sockmesh.io/') || k.startsWith(ISTIO_TRAFFIC) || k.startsWith('sidecar.istio.io/');
}

/** The labels an object keeps when it is trimmed on arrival. */
export function keptLabel(k: string): boolean {
  return k === SERVICE_NAME_LABEL || k.startsWith('sockmesh.io/') || k === ISTIO_INJECT;
}

/** A malformed annotation or field, reported as an Event on its object. */
export interface Problem {
  field: string;
  message: string;
}

const shown = (v: string, n = 40) => JSON.stringify(v.slice(0, n));

/** "true" or "false". */
export function boolAnnotation(name: string, v: string, problems: Problem[]): boolean | undefined {
  if (v === 'true' || v === 'false') return v === 'true';
  problems.push({ field: name, message: `must be "true" or "false", got ${shown(v)}` });
  return undefined;
}

/** One of `values`, said as `words`. */
export function oneOfAnnotation<T extends string>(name: string, v: string, values: readonly T[], words: string, problems: Problem[]): T | undefined {
  if ((values as readonly string[]).includes(v)) return v as T;
  problems.push({ field: name, message: `must be ${words}, got ${shown(v)}` });
  return undefined;
}

/** Istio's comma-separated ports ('*' where allowed). */
export function portList(field: string, text: string, problems: Problem[], allowStar: boolean): number[] | '*' | undefined {
  const items = text.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (allowStar && items.length === 1 && items[0] === '*') return '*';
  const out: number[] = [];
  for (const item of items) {
    const n = /^\d{1,5}$/.test(item) ? Number(item) : NaN;
    if (!(n >= 1 && n <= 65535)) {
      problems.push({ field, message: `${shown(item)} is not a port (1-65535)${allowStar ? ' or *' : ''}` });
      return undefined;
    }
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

/** Istio's comma-separated CIDRs ('*' where allowed); IPv6 ranges are left out (IPv4 capture). */
export function cidrList(field: string, text: string, problems: Problem[], allowStar: boolean): string[] | undefined {
  const items = text.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (allowStar && items.length === 1 && items[0] === '*') return ['*'];
  const out: string[] = [];
  for (const item of items) {
    try {
      const c = parseCidr(item);
      if (c.text.includes(':')) continue; // IPv6 ranges: sockmesh captures IPv4 only for now
      out.push(c.text);
    } catch {
      problems.push({ field, message: `${shown(item, 60)} is not a CIDR${allowStar ? ' or *' : ''}` });
      return undefined;
    }
  }
  return out;
}

/** `sockmesh.io/rate-limit: "100"` or `"100,burst=20"` -> rateLimit, or a problem. */
export function rateLimitAnnotation(v: string): { value: Record<string, unknown> } | { problem: Problem } {
  const m = /^\s*(\d+)\s*(?:,\s*burst\s*=\s*(\d+)\s*)?$/.exec(v);
  if (!m) return { problem: { field: SERVICE_ANNOTATIONS.rateLimit, message: `must be "<requests per second>" or "<requests per second>,burst=<n>", got ${shown(v)}` } };
  return { value: { requestsPerSecond: Number(m[1]), burst: m[2] === undefined ? 0 : Number(m[2]) } };
}
