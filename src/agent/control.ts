// The agent's control socket: /run/sockmesh/<instance>.sock. One JSON request line in, one JSON
// response line out. Every request is validated here, at the boundary; anything malformed is
// answered with an error and changes nothing. Any local process may connect (a pod's `sockmesh
// wait` runs as its app's user), and every request is checked against who sent it, read from the
// socket (src/agent/peer.ts), never from the request: switching services and status need root;
// `wait` answers a caller about its own pod only.
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { dirname } from 'node:path';
import { Codes, SockmeshError, UserError, describe, type Code } from '../errors.js';
import { STATE_DIR } from './state.js';
import { NAME_MAX, NAME_RE } from '../config/constants.js';
import { socketFd } from '../util/fd.js';
import { identifyCaller, type Caller } from './peer.js';

export type ControlRequest =
  | { op: 'status' }
  | { op: 'service'; name: string; redirect: boolean }
  | { op: 'reset'; name: string }
  /** A governance sidecar asking for the policy (long poll: answered when the agent's version is
   * not `have`, or after a while), saying which version it runs. */
  | { op: 'policy'; have: number; sidecar: { id: string; version: number; refused?: number } }
  /** The caller's own pod: answered once it is meshed (its state in the kernel), or after
   * `timeoutMs` (at most 30 s) with meshed: false and why. */
  | { op: 'wait'; timeoutMs: number };

/** Which requests need root (uid 0); the others are answered about the caller itself. */
export const ROOT_OPS: ReadonlySet<ControlRequest['op']> = new Set(['status', 'service', 'reset', 'policy']);

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: { code: Code; message: string } };

const MAX_REQUEST = 64 * 1024;

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
      only(['op', 'have', 'sidecar']);
      const s = o.sidecar as Record<string, unknown> | null;
      if (!Number.isInteger(o.have) || (o.have as number) < 0) throw new UserError(Codes.USAGE, 'have must be a policy version (an integer >= 0)');
      if (typeof s !== 'object' || s === null || typeof s.id !== 'string' || !/^[\w.:-]{1,128}$/.test(s.id) || !Number.isInteger(s.version)) {
        throw new UserError(Codes.USAGE, 'sidecar must be { id: a name of letters, digits, ".", ":", "-", "_" (at most 128), version: an integer }');
      }
      if (s.refused !== undefined && (!Number.isInteger(s.refused) || (s.refused as number) < 0)) throw new UserError(Codes.USAGE, 'sidecar.refused must be a policy version (an integer >= 0)');
      return { op: 'policy', have: o.have as number, sidecar: { id: s.id, version: s.version as number, ...(s.refused !== undefined ? { refused: s.refused as number } : {}) } };
    }
    case 'wait': {
      only(['op', 'timeoutMs']);
      const t = o.timeoutMs ?? 30_000;
      if (!Number.isInteger(t) || (t as number) < 0 || (t as number) > 30_000) throw new UserError(Codes.USAGE, 'timeoutMs must be an integer from 0 to 30000');
      return { op: 'wait', timeoutMs: t as number };
    }
    default:
      throw new UserError(Codes.USAGE, `unknown op ${JSON.stringify(typeof o.op === 'string' ? o.op.slice(0, 40) : o.op)} (status, service, reset, policy, wait)`);
  }
}

export class ControlServer {
  private server: Server | undefined;

  constructor(readonly path: string, private readonly handle: (req: ControlRequest, caller: Caller) => Promise<unknown>,
    private readonly identify: (fd: number) => Caller = (fd) => identifyCaller(fd)) {}

  async start(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o711 });
    chmodSync(dirname(this.path), 0o711);
    if (existsSync(this.path)) {
      if (await isLive(this.path)) throw new SockmeshError(Codes.INSTANCE_BUSY, `another agent answers on ${this.path}`);
      rmSync(this.path, { force: true }); // left by an agent that was killed
    }
    this.server = createServer((sock) => {
      // Who connected, from the socket (as of connect()): taken before anything is read.
      let caller: Caller;
      try {
        caller = this.identify(socketFd(sock));
      } catch (e) {
        sock.end(`${JSON.stringify({ ok: false, error: { code: Codes.INTERNAL, message: `cannot tell who is asking: ${describe(e)}` } })}\n`);
        return;
      }
      let buf = '';
      sock.setEncoding('utf8');
      sock.on('error', () => sock.destroy());
      sock.on('data', (chunk: string) => {
        buf += chunk;
        if (buf.length > MAX_REQUEST) {
          sock.end(`${JSON.stringify({ ok: false, error: { code: Codes.USAGE, message: `request over ${MAX_REQUEST} bytes` } })}\n`);
          sock.destroy();
          return;
        }
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        sock.pause();
        void this.answer(buf.slice(0, nl), caller).then((resp) => sock.end(`${JSON.stringify(resp)}\n`));
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      // Any uid may connect (requests are checked against the caller); the directory keeps its
      // other files private (0711: reachable, not listable).
      const old = process.umask(0o111);
      this.server!.listen(this.path, () => {
        process.umask(old);
        resolve();
      });
    });
    chmodSync(this.path, 0o666);
  }

  private async answer(line: string, caller: Caller): Promise<ControlResponse> {
    try {
      const req = parseRequest(line);
      if (ROOT_OPS.has(req.op) && caller.uid !== 0) {
        throw new UserError(Codes.FORBIDDEN, `op ${req.op} needs root; it was asked by uid ${caller.uid}`);
      }
      return { ok: true, result: await this.handle(req, caller) };
    } catch (e) {
      const code = e instanceof SockmeshError ? e.code : Codes.INTERNAL;
      return { ok: false, error: { code, message: describe(e) } };
    }
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

/** Whether an agent answers on the socket. */
export function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Sends one request to the agent; throws the agent's error as a SockmeshError/UserError. */
export function request(path: string, req: ControlRequest, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    const timer = setTimeout(() => { s.destroy(); reject(new SockmeshError(Codes.INSTANCE_BUSY, `the agent on ${path} did not answer in ${timeoutMs} ms`)); }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(`${JSON.stringify(req)}\n`));
    s.on('data', (c: string) => { buf += c; });
    s.on('error', (e) => { clearTimeout(timer); reject(new SockmeshError(Codes.INSTANCE_MISSING, `cannot reach the agent on ${path}: ${e.message}`)); });
    s.on('end', () => {
      clearTimeout(timer);
      try {
        const resp = JSON.parse(buf) as ControlResponse;
        if (resp.ok) resolve(resp.result);
        else {
          const Err = resp.error.code === Codes.INTERNAL ? SockmeshError : UserError;
          reject(new Err(resp.error.code, resp.error.message));
        }
      } catch {
        reject(new SockmeshError(Codes.INTERNAL, `the agent on ${path} answered something that is not JSON`));
      }
    });
  });
}
