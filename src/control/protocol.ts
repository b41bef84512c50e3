// The agent's control protocol: one JSON request line in, one JSON response line out, over the
// unix socket /run/sockmesh/<instance>.sock. Every request is parsed and checked here, at the
// boundary: anything malformed is answered with an error and changes nothing.
import { Codes, UserError, type Code } from '../errors.js';
import { NAME_MAX, NAME_RE } from '../config/constants.js';
import { STATE_DIR } from '../util/paths.js';

export type ControlRequest =
  | { op: 'status' }
  | { op: 'service'; name: string; redirect: boolean }
  | { op: 'reset'; name: string }
  /** A governance sidecar asking for the policy (long poll: answered when the agent's version is
   * not `have`, or after a while), saying which version it runs. */
  | { op: 'policy'; have: number; sidecar: { id: string; version: number; refused?: number }; epoch?: string }
  /** The caller's own pod: answered once it is meshed (its state in the kernel), or after
   * `timeoutMs` (at most 30 s) with meshed: false and why. */
  | { op: 'wait'; timeoutMs: number }
  /** The caller's own pod's certificate and key (its sidecar, or root in the pod): answered at
   * once when it lacks the current one (`have`: the serial it holds), else when it is renewed. */
  | { op: 'identity'; have: string };

/** Which requests need root (uid 0); the others (wait, identity) are answered about the caller's own pod. */
export const ROOT_OPS: ReadonlySet<ControlRequest['op']> = new Set(['status', 'service', 'reset', 'policy']);

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: { code: Code; message: string } };

/** A request line longer than this is refused unread. */
export const MAX_REQUEST = 64 * 1024;

export function socketPath(instance: string, dir = STATE_DIR): string {
  return `${dir}/${instance}.sock`;
}

/** Parses and checks one request line; throws a UserError naming the problem. */
export function parseRequest(line: string): ControlRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new UserError(Codes.USAGE, 'request is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UserError(Codes.USAGE, 'request must be a JSON object');
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  const only = (allowed: string[]) => {
    const extra = keys.filter((k) => !allowed.includes(k));
    if (extra.length) throw new UserError(Codes.USAGE, `unknown field ${JSON.stringify(extra[0].slice(0, 40))} for op ${String(o.op)}`);
  };
  const name = () => {
    if (typeof o.name !== 'string' || o.name.length > NAME_MAX || !NAME_RE.test(o.name)) throw new UserError(Codes.USAGE, 'name must be a service name (a lower-case DNS name)');
    return o.name;
  };
  switch (o.op) {
    case 'status':
      only(['op']);
      return { op: 'status' };
    case 'service':
      only(['op', 'name', 'redirect']);
      if (typeof o.redirect !== 'boolean') throw new UserError(Codes.USAGE, 'redirect must be true or false');
      return { op: 'service', name: name(), redirect: o.redirect };
    case 'reset':
      only(['op', 'name']);
      return { op: 'reset', name: name() };
    case 'policy': {
      only(['op', 'have', 'sidecar', 'epoch']);
      if (o.epoch !== undefined && (typeof o.epoch !== 'string' || !/^[\w-]{1,64}$/.test(o.epoch))) throw new UserError(Codes.USAGE, 'epoch must be the agent epoch of the version the sidecar has (letters, digits, "-", "_")');
      const s = o.sidecar as Record<string, unknown> | null;
      if (!Number.isInteger(o.have) || (o.have as number) < 0) throw new UserError(Codes.USAGE, 'have must be a policy version (an integer >= 0)');
      if (typeof s !== 'object' || s === null || typeof s.id !== 'string' || !/^[\w.:-]{1,128}$/.test(s.id) || !Number.isInteger(s.version)) {
        throw new UserError(Codes.USAGE, 'sidecar must be { id: a name of letters, digits, ".", ":", "-", "_" (at most 128), version: an integer }');
      }
      if (s.refused !== undefined && (!Number.isInteger(s.refused) || (s.refused as number) < 0)) throw new UserError(Codes.USAGE, 'sidecar.refused must be a policy version (an integer >= 0)');
      return { op: 'policy', have: o.have as number, sidecar: { id: s.id, version: s.version as number, ...(s.refused !== undefined ? { refused: s.refused as number } : {}) }, ...(o.epoch !== undefined ? { epoch: o.epoch as string } : {}) };
    }
    case 'wait': {
      only(['op', 'timeoutMs']);
      const t = o.timeoutMs ?? 30_000;
      if (!Number.isInteger(t) || (t as number) < 0 || (t as number) > 30_000) throw new UserError(Codes.USAGE, 'timeoutMs must be an integer from 0 to 30000');
      return { op: 'wait', timeoutMs: t as number };
    }
    case 'identity': {
      only(['op', 'have']);
      const have = o.have ?? '';
      if (typeof have !== 'string' || !/^[0-9A-Fa-f]{0,64}$/.test(have)) throw new UserError(Codes.USAGE, 'have must be the serial number (hex) of the certificate the caller holds, or ""');
      return { op: 'identity', have };
    }
    default:
      throw new UserError(Codes.USAGE, `unknown op ${JSON.stringify(typeof o.op === 'string' ? o.op.slice(0, 40) : o.op)} (status, service, reset, policy, wait, identity)`);
  }
}

