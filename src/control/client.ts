// A client of the agent's control socket: the CLI's commands, `sockmesh wait`, the governance
// sidecar's long poll.
import { connect } from 'node:net';
import { Codes, SockmeshError, UserError } from '../errors.js';
import type { ControlRequest, ControlResponse } from './protocol.js';

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
