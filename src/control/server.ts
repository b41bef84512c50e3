// The agent's end of the control socket. Any local process may connect (a pod's `sockmesh wait`
// runs as its app's user), and every request is checked against who sent it, read from the socket
// (peer.ts), never from the request: switching services and status need root; `wait` answers a
// caller about its own pod only.
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname } from 'node:path';
import { Codes, SockmeshError, UserError, describe } from '../errors.js';
import { socketFd } from '../util/fd.js';
import { isLive } from './client.js';
import { identifyCaller, type Caller } from './peer.js';
import { MAX_REQUEST, parseRequest, ROOT_OPS, type ControlRequest, type ControlResponse } from './protocol.js';

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

