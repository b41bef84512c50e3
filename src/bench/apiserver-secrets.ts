// The stand-in API server's Secrets (what the mesh CA's store calls): get by namespace/name, and
// create, answering 409 AlreadyExists when it is there, as a real server does.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { json, readJson, status, type Obj } from './apiserver-kinds.js';

export class SecretStore {
  /** By namespace/name. */
  readonly secrets = new Map<string, Obj>();

  /** `nextRv`: the server's next resourceVersion. */
  constructor(private readonly nextRv: () => number) {}

  /** GET …/secrets/NAME or POST …/secrets in namespace `ns`. */
  handle(req: IncomingMessage, res: ServerResponse, ns: string, name: string | undefined): void {
    if (req.method === 'GET' && name) {
      const s = this.secrets.get(`${ns}/${name}`);
      if (s) json(res, 200, s);
      else json(res, 404, status(404, 'NotFound', `secrets "${name}" not found`));
      return;
    }
    if (req.method !== 'POST' || name) {
      json(res, 405, status(405, 'MethodNotAllowed', `${req.method} is not supported here`));
      return;
    }
    readJson(req, (o) => {
      const key = `${ns}/${o.metadata.name}`;
      if (this.secrets.has(key)) {
        json(res, 409, status(409, 'AlreadyExists', `secrets "${o.metadata.name}" already exists`));
        return;
      }
      const made = { ...o, metadata: { ...o.metadata, namespace: ns, uid: randomUUID(), resourceVersion: String(this.nextRv()) } };
      this.secrets.set(key, made);
      json(res, 201, made);
    });
  }
}
