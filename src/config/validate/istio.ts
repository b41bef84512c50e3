// Istio's security documents, as the Kubernetes API holds them and as a config file may carry them
// after the sockmesh config (multi-document YAML): PeerAuthentication and AuthorizationPolicy of
// security.istio.io (v1, v1beta1), checked into the model with Istio's semantics. What sockmesh
// does not enforce is reported, and never makes a policy weaker: an ALLOW rule with a condition
// sockmesh cannot check is dropped (it allows nothing), a DENY rule keeps the conditions it can
// check (it denies at least as much).
import { MTLS_MODES, NAMESPACE_RE } from '../constants.js';
import type { AuthorizationOperation, AuthorizationPolicy, AuthorizationRule, AuthorizationSource, MtlsMode, PeerAuthentication } from '../model.js';
import { join, kind, type Checker } from './checker.js';

export const SECURITY_GROUP = 'security.istio.io';
const VERSIONS = ['v1', 'v1beta1'];

/** What one Istio security document gave, and the fields of it sockmesh does not enforce. */
export interface IstioSecurity {
  peerAuthentication?: PeerAuthentication;
  authorizationPolicy?: AuthorizationPolicy;
  ignored: string[];
}

function meta(c: Checker, path: string, raw: unknown, defaultNamespace: string): { name: string; namespace: string } {
  const m = c.object(join(path, 'metadata'), raw ?? {}, ['name', 'namespace', 'labels', 'annotations', 'uid', 'resourceVersion', 'creationTimestamp', 'generation']) ?? {};
  const name = c.name(join(path, 'metadata.name'), m.name) ?? '';
  const namespace = m.namespace === undefined ? defaultNamespace : c.match(join(path, 'metadata.namespace'), m.namespace, NAMESPACE_RE, 'a namespace') ?? defaultNamespace;
  return { name, namespace };
}

/** A workload selector; none (undefined) when it selects no label: Istio takes `selector: {}` as namespace-wide. */
function selector(c: Checker, path: string, raw: unknown): Record<string, string> | undefined {
  if (raw === undefined) return undefined;
  const o = c.object(path, raw, ['matchLabels']) ?? {};
  const labels = o.matchLabels === undefined ? {} : c.labels(join(path, 'matchLabels'), o.matchLabels);
  return Object.keys(labels).length ? labels : undefined;
}

function mode(c: Checker, path: string, raw: unknown): MtlsMode | undefined {
  const o = c.object(path, raw, ['mode']) ?? {};
  if (o.mode === undefined || o.mode === 'UNSET') return undefined;
  return c.oneOf(join(path, 'mode'), o.mode, MTLS_MODES);
}

/** A list of values; an empty list is no list (Istio: the field is not set). */
function strings(c: Checker, path: string, raw: unknown): string[] | undefined {
  if (raw === undefined || (Array.isArray(raw) && raw.length === 0)) return undefined;
  return (c.array(path, raw) ?? []).flatMap((v, i) => (typeof v === 'string' && v !== '' ? [v] : (c.fail(`${path}[${i}]`, `must be a non-empty string, got ${kind(v)}`), [])));
}

/** Istio writes ports as strings in AuthorizationPolicy: "8080". */
function portList(c: Checker, path: string, raw: unknown): number[] | undefined {
  const s = strings(c, path, raw);
  return s?.flatMap((v, i) => {
    const n = Number(v);
    return Number.isInteger(n) && n >= 1 && n <= 65535 ? [n] : (c.fail(`${path}[${i}]`, `must be a port 1-65535, got ${JSON.stringify(v.slice(0, 20))}`), []);
  });
}

function peerAuthentication(c: Checker, path: string, spec: Record<string, unknown>, m: { name: string; namespace: string }): PeerAuthentication {
  const s = c.object(join(path, 'spec'), spec, ['selector', 'mtls', 'portLevelMtls']) ?? {};
  const sel = selector(c, join(path, 'spec.selector'), s.selector);
  const portLevel: PeerAuthentication['portLevel'] = [];
  if (s.portLevelMtls !== undefined) {
    const pl = typeof s.portLevelMtls === 'object' && s.portLevelMtls !== null && !Array.isArray(s.portLevelMtls) ? s.portLevelMtls as Record<string, unknown> : (c.fail(join(path, 'spec.portLevelMtls'), 'must be a mapping of port to { mode }'), {});
    if (Object.keys(pl).length && sel === undefined) c.fail(join(path, 'spec.portLevelMtls'), 'needs a selector: Istio applies port-level mTLS to selected workloads only');
    for (const [k, v] of Object.entries(pl)) {
      const port = c.port(join(path, `spec.portLevelMtls.${k}`), Number(k));
      const md = mode(c, join(path, `spec.portLevelMtls.${k}`), v);
      if (port !== undefined && md !== undefined) portLevel.push({ port, mode: md });
    }
  }
  return { ...m, ...(sel !== undefined ? { selector: sel } : {}), mode: s.mtls === undefined ? undefined : mode(c, join(path, 'spec.mtls'), s.mtls), portLevel };
}

const SOURCE_KEYS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces'] as const;
const SOURCE_UNENFORCED = ['requestPrincipals', 'notRequestPrincipals', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const OPERATION_UNENFORCED = ['hosts', 'notHosts'];

function rule(c: Checker, path: string, raw: unknown, action: 'ALLOW' | 'DENY', ignored: string[]): AuthorizationRule | undefined {
  let unenforced = false;
  const note = (field: string) => {
    ignored.push(`${path}.${field}`);
    unenforced = true;
  };
  // A key sockmesh does not know (a field of a newer Istio, say) is a condition it cannot check:
  // reported, and the rule treated as with any unenforced field, never the policy thrown away.
  const known = (at: string, v: unknown, keys: readonly string[]): Record<string, unknown> => {
    const o = c.object(at, v ?? {}, [...keys, ...Object.keys(typeof v === 'object' && v !== null && !Array.isArray(v) ? v : {})]) ?? {};
    for (const k of Object.keys(o)) if (!keys.includes(k)) note(`${at.slice(path.length + 1) ? `${at.slice(path.length + 1)}.` : ''}${k}`);
    return o;
  };
  const o = known(path, raw, ['from', 'to', 'when']);
  if (o.when !== undefined) note('when');
  const from: AuthorizationSource[] = (o.from === undefined ? [] : c.array(join(path, 'from'), o.from) ?? []).map((f, i) => {
    const at = `${join(path, 'from')}[${i}]`;
    const src = known(at, f, ['source']);
    const so = known(`${at}.source`, src.source, [...SOURCE_KEYS, ...SOURCE_UNENFORCED]);
    for (const k of SOURCE_UNENFORCED) if (so[k] !== undefined) note(`from[${i}].source.${k}`);
    const out: AuthorizationSource = {};
    for (const k of SOURCE_KEYS) {
      const v = strings(c, `${at}.source.${k}`, so[k]);
      if (v) out[k] = v;
    }
    return out;
  });
  const to: AuthorizationOperation[] = (o.to === undefined ? [] : c.array(join(path, 'to'), o.to) ?? []).map((t, i) => {
    const at = `${join(path, 'to')}[${i}]`;
    const op = known(at, t, ['operation']);
    const oo = known(`${at}.operation`, op.operation, ['ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths', ...OPERATION_UNENFORCED]);
    for (const k of OPERATION_UNENFORCED) if (oo[k] !== undefined) note(`to[${i}].operation.${k}`);
    const out: AuthorizationOperation = {};
    for (const k of ['ports', 'notPorts'] as const) {
      const v = portList(c, `${at}.operation.${k}`, oo[k]);
      if (v) out[k] = v;
    }
    for (const k of ['methods', 'notMethods', 'paths', 'notPaths'] as const) {
      const v = strings(c, `${at}.operation.${k}`, oo[k]);
      if (v) out[k] = v;
    }
    return out;
  });
  // An ALLOW rule with a condition sockmesh cannot check would allow more than it says: dropped.
  if (unenforced && action === 'ALLOW') return undefined;
  return { from, to };
}

function authorizationPolicy(c: Checker, path: string, spec: Record<string, unknown>, m: { name: string; namespace: string }, ignored: string[]): AuthorizationPolicy | undefined {
  const s = c.object(join(path, 'spec'), spec, ['selector', 'action', 'rules', 'provider', 'targetRef', 'targetRefs']) ?? {};
  for (const k of ['provider', 'targetRef', 'targetRefs']) if (s[k] !== undefined) ignored.push(`${path}.spec.${k}`);
  const action = s.action === undefined ? 'ALLOW' : s.action;
  if (action === 'AUDIT' || action === 'CUSTOM') {
    // Neither allows nor denies in sockmesh (no audit sink, no external authorizer): the policy is left out.
    ignored.push(`${path}.spec.action (${action})`);
    return undefined;
  }
  const act = c.oneOf(join(path, 'spec.action'), action, ['ALLOW', 'DENY'] as const) ?? 'ALLOW';
  const rules = (s.rules === undefined ? [] : c.array(join(path, 'spec.rules'), s.rules) ?? [])
    .map((r, i) => rule(c, `${join(path, 'spec.rules')}[${i}]`, r, act, ignored))
    .filter((r): r is AuthorizationRule => r !== undefined);
  const sel = selector(c, join(path, 'spec.selector'), s.selector);
  return { ...m, ...(sel !== undefined ? { selector: sel } : {}), action: act, rules };
}

/** One Istio security document; undefined when it is not one (another kind). */
export function istioSecurity(c: Checker, path: string, raw: unknown, defaultNamespace: string): IstioSecurity | undefined {
  const o = c.object(path, raw, ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  if (!o) return undefined;
  const [group, version] = typeof o.apiVersion === 'string' ? o.apiVersion.split('/') : [];
  if (group !== SECURITY_GROUP || !VERSIONS.includes(version)) return undefined;
  const m = meta(c, path, o.metadata, defaultNamespace);
  const spec = (o.spec ?? {}) as Record<string, unknown>;
  const ignored: string[] = [];
  if (o.kind === 'PeerAuthentication') return { peerAuthentication: peerAuthentication(c, path, spec, m), ignored };
  if (o.kind === 'AuthorizationPolicy') {
    const ap = authorizationPolicy(c, path, spec, m, ignored);
    return { ...(ap ? { authorizationPolicy: ap } : {}), ignored };
  }
  c.fail(join(path, 'kind'), `must be PeerAuthentication or AuthorizationPolicy for ${SECURITY_GROUP}, got ${kind(o.kind)}`);
  return undefined;
}
