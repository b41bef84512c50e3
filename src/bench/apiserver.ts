// A local stand-in for the Kubernetes API server, for the Kubernetes source's tests and the
// `bench --kubernetes` sync measurement: plain HTTP on 127.0.0.1, the real list/watch protocol for
// Pods, Services and EndpointSlices (core/v1, discovery.k8s.io/v1) as the API reference describes
// it:
// - lists: `limit`/`continue` pagination, the list's metadata.resourceVersion, `fieldSelector`
//   spec.nodeName for Pods;
// - watches (`watch=true`): newline-delimited JSON events in a chunked response, starting after the
//   `resourceVersion` asked for; BOOKMARK events when `allowWatchBookmarks` is set; a version older
//   than the kept history gets an ERROR event with a 410 "Expired" Status and the stream ends (what
//   a real server does after compaction); `timeoutSeconds` ends the stream;
// - Event creation (POST …/events), kept for tests to read;
// - Istio's DestinationRules and VirtualServices (networking.istio.io/v1), PeerAuthentications and
//   AuthorizationPolicies (security.istio.io/v1) when `istio` is on, with
//   the group's discovery document; off (no CRDs), they and the group answer 404, as a cluster
//   without Istio does.
// Faults for tests: drop every open watch mid-stream, go down (connections refused) and come back on
// the same port, hang (connections stay open, nothing is answered or sent: a stopped process), have
// Istio's group answer an error, compact the history. Optionally HTTPS with a bearer token, as a real cluster
// (a request without the token gets 401 Unauthorized).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { ISTIO, json, KINDS, perResource, readJson, RESOURCES, status, type Change, type Obj, type Resource, type Watcher } from './apiserver-kinds.js';
import { SecretStore } from './apiserver-secrets.js';

export { kubeconfigYaml, type Resource } from './apiserver-kinds.js';

export interface ApiStats {
  lists: Record<Resource, number>;
  pages: Record<Resource, number>;
  /** resourceVersion each watch asked to start from, in order. */
  watches: Record<Resource, string[]>;
  bookmarks: number;
  expired: number;
}

export class FakeApiServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly objects: Record<Resource, Map<string, Obj>> = perResource(() => new Map());
  private readonly secretStore = new SecretStore(() => ++this.rv);
  /** Secrets by namespace/name (tests read and plant them). */
  readonly secrets = this.secretStore.secrets;
  private history: Change[] = [];
  /** Oldest resourceVersion a watch may resume from (after compact(), the current one). */
  private oldest = 0;
  private rv = 1;
  private readonly watchers = new Set<Watcher>();
  private bookmarkTimer: NodeJS.Timeout | undefined;
  readonly events: Obj[] = [];
  readonly stats: ApiStats = {
    lists: perResource(() => 0),
    pages: perResource(() => 0),
    watches: perResource((): string[] => []),
    bookmarks: 0,
    expired: 0,
  };
  port = 0;

  /** Whether Istio's CRDs are installed (see setIstio). */
  private istio: boolean;
  /** Requests for the networking.istio.io discovery document. */
  istioDiscoveries = 0;
  /** An HTTP status Istio's group and resources answer with instead (see setIstioError). */
  private istioError: number | undefined;
  private securityError: number | undefined;
  /** While hung: requests held unanswered, watches sent nothing. */
  private hung: Array<() => void> | undefined;

  constructor(private readonly opts: { bookmarkMs?: number; maxPage?: number; tls?: { key: string; cert: string }; token?: string; istio?: boolean } = {}) {
    this.istio = opts.istio ?? false;
  }

  /**
   * Installs or removes Istio's CRDs. Removing them deletes their objects (no watch events: the
   * open watches end, and lists answer 404 from then on), as deleting a CRD does.
   */
  setIstio(on: boolean): void {
    this.istio = on;
    if (on) return;
    for (const r of ISTIO) this.objects[r].clear();
    for (const w of this.watchers) {
      if (!ISTIO.includes(w.resource)) continue;
      clearTimeout(w.timer);
      this.watchers.delete(w);
      w.res.end();
    }
  }

  /** Istio's networking discovery and lists answer `code` (a broken aggregated API: 500, 503) until undefined. */
  setIstioError(code: number | undefined): void {
    this.istioError = code;
  }

  /** The same for security.istio.io (PeerAuthentications, AuthorizationPolicies). */
  setSecurityError(code: number | undefined): void {
    this.securityError = code;
  }

  /** Stops answering without closing anything, as a stopped process: requests wait, watches go quiet. */
  hang(): void {
    this.hung ??= [];
  }

  /** Answers what waited and goes on. */
  resume(): void {
    const held = this.hung ?? [];
    this.hung = undefined;
    for (const h of held) h();
  }

  get url(): string {
    return `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  /** Requests refused for want of the token. */
  unauthorized = 0;

  /** Starts listening (again, on the same port after down()). */
  async start(): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse) => this.handle(req, res);
    const server: Server = this.opts.tls ? createTlsServer(this.opts.tls, handler) as unknown as Server : createServer(handler);
    server.on(this.opts.tls ? 'secureConnection' : 'connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    this.bookmarkTimer = setInterval(() => this.bookmark(), this.opts.bookmarkMs ?? 1000);
    this.bookmarkTimer.unref();
  }

  /** Stops answering: open connections are cut and new ones refused, until start(). */
  async down(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    for (const w of this.watchers) clearTimeout(w.timer);
    this.watchers.clear();
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  async close(): Promise<void> {
    await this.down();
  }

  /** Cuts every open watch mid-stream (a reset connection, no final chunk). */
  dropWatches(): number {
    const n = this.watchers.size;
    for (const w of this.watchers) {
      clearTimeout(w.timer);
      w.res.socket?.destroy();
    }
    this.watchers.clear();
    return n;
  }

  /** Forgets the change history: a watch resuming from an older version gets 410 Expired. */
  compact(): void {
    this.history = [];
    this.oldest = this.rv;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Creates or replaces an object (ADDED or MODIFIED); returns it as stored. */
  apply(resource: Resource, obj: Obj): Obj {
    const k = KINDS[resource];
    const key = `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
    const old = this.objects[resource].get(key);
    const rv = ++this.rv;
    const stored: Obj = {
      ...obj, apiVersion: k.apiVersion, kind: k.kind,
      metadata: { ...obj.metadata, uid: obj.metadata.uid ?? old?.metadata.uid ?? randomUUID(), resourceVersion: String(rv) },
    };
    this.objects[resource].set(key, stored);
    this.publish({ rv, type: old ? 'MODIFIED' : 'ADDED', resource, object: stored });
    return stored;
  }

  /** Adds many objects at once without history (a cluster that existed before anyone watched). */
  seed(resource: Resource, objs: Obj[]): void {
    const k = KINDS[resource];
    for (const obj of objs) {
      const rv = ++this.rv;
      this.objects[resource].set(`${obj.metadata.namespace ?? ''}/${obj.metadata.name}`, {
        ...obj, apiVersion: k.apiVersion, kind: k.kind, metadata: { ...obj.metadata, uid: obj.metadata.uid ?? randomUUID(), resourceVersion: String(rv) },
      });
    }
    this.oldest = this.rv;
  }

  remove(resource: Resource, namespace: string, name: string): boolean {
    const key = `${namespace}/${name}`;
    const old = this.objects[resource].get(key);
    if (!old) return false;
    this.objects[resource].delete(key);
    const rv = ++this.rv;
    this.publish({ rv, type: 'DELETED', resource, object: { ...old, metadata: { ...old.metadata, resourceVersion: String(rv) } } });
    return true;
  }

  get(resource: Resource, namespace: string, name: string): Obj | undefined {
    return this.objects[resource].get(`${namespace}/${name}`);
  }

  private publish(c: Change): void {
    this.history.push(c);
    for (const w of this.watchers) if (w.resource === c.resource) this.send(w, c);
  }

  private send(w: Watcher, c: Change): void {
    if (this.hung) return;
    if (w.node !== undefined && c.object.spec?.nodeName !== w.node) return;
    w.res.write(`${JSON.stringify({ type: c.type, object: c.object })}\n`);
  }

  private bookmark(): void {
    if (this.hung) return;
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const k = KINDS[w.resource];
      this.stats.bookmarks++;
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: k.kind, apiVersion: k.apiVersion, metadata: { resourceVersion: String(this.rv) } } })}\n`);
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.hung) {
      this.hung.push(() => this.handle(req, res));
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    if (this.opts.token !== undefined && req.headers.authorization !== `Bearer ${this.opts.token}`) {
      this.unauthorized++;
      json(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    const secret = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/.exec(url.pathname);
    if (secret) {
      this.secretStore.handle(req, res, secret[1], secret[2]);
      return;
    }
    if (req.method === 'POST' && /^\/api\/v1\/namespaces\/[^/]+\/events$/.test(url.pathname)) {
      readJson(req, (ev) => {
        ev.metadata = { ...ev.metadata, name: `${String(ev.metadata.generateName ?? 'event.')}${this.events.length}`, resourceVersion: String(++this.rv) };
        this.events.push(ev);
        json(res, 201, ev);
      });
      return;
    }
    const err = url.pathname.startsWith('/apis/networking.istio.io') ? this.istioError : url.pathname.startsWith('/apis/security.istio.io') ? this.securityError : undefined;
    if (err !== undefined) {
      json(res, err, status(err, 'InternalError', 'an error on the server ("the aggregated API is unavailable") has prevented the request from succeeding'));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/apis/networking.istio.io' && this.istio) {
      this.istioDiscoveries++;
      const versions = [{ groupVersion: 'networking.istio.io/v1', version: 'v1' }, { groupVersion: 'networking.istio.io/v1beta1', version: 'v1beta1' }];
      json(res, 200, { kind: 'APIGroup', apiVersion: 'v1', name: 'networking.istio.io', versions, preferredVersion: versions[0] });
      return;
    }
    if (req.method === 'GET' && url.pathname === '/apis/security.istio.io' && this.istio) {
      const versions = [{ groupVersion: 'security.istio.io/v1', version: 'v1' }, { groupVersion: 'security.istio.io/v1beta1', version: 'v1beta1' }];
      json(res, 200, { kind: 'APIGroup', apiVersion: 'v1', name: 'security.istio.io', versions, preferredVersion: versions[0] });
      return;
    }
    if (url.pathname === '/apis/networking.istio.io') this.istioDiscoveries++;
    const resource = RESOURCES.find((r) => KINDS[r].path.test(url.pathname) && (this.istio || !ISTIO.includes(r)));
    if (req.method !== 'GET' || !resource) {
      json(res, 404, status(404, 'NotFound', `the server could not find the requested resource (${req.method} ${url.pathname})`));
      return;
    }
    const q = url.searchParams;
    const selector = q.get('fieldSelector') ?? '';
    const m = /^spec\.nodeName=(.*)$/.exec(selector);
    if (selector && !(resource === 'pods' && m)) {
      json(res, 400, status(400, 'BadRequest', `field label not supported: ${selector}`));
      return;
    }
    const node = m ? m[1] : undefined;
    if (q.get('watch') === 'true' || q.get('watch') === '1') this.watch(resource, q, node, res);
    else this.list(resource, q, node, res);
  }

  private list(resource: Resource, q: URLSearchParams, node: string | undefined, res: ServerResponse): void {
    const k = KINDS[resource];
    const all = [...this.objects[resource].entries()]
      .filter(([, o]) => node === undefined || o.spec?.nodeName === node)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const limit = Math.min(Number(q.get('limit') ?? 0) || Infinity, this.opts.maxPage ?? Infinity);
    let start = 0;
    let rv = String(this.rv);
    const cont = q.get('continue');
    if (cont) {
      const t = JSON.parse(Buffer.from(cont, 'base64').toString()) as { after: string; rv: string };
      start = all.findIndex(([key]) => key > t.after);
      if (start < 0) start = all.length;
      rv = t.rv;
    } else {
      this.stats.lists[resource]++;
    }
    this.stats.pages[resource]++;
    const page = all.slice(start, start + limit);
    const more = start + page.length < all.length;
    const metadata: Record<string, unknown> = { resourceVersion: rv };
    if (more) {
      metadata.continue = Buffer.from(JSON.stringify({ after: page[page.length - 1][0], rv })).toString('base64');
      metadata.remainingItemCount = all.length - start - page.length;
    }
    json(res, 200, { kind: `${k.kind}List`, apiVersion: k.apiVersion, metadata, items: page.map(([, o]) => o) });
  }

  private watch(resource: Resource, q: URLSearchParams, node: string | undefined, res: ServerResponse): void {
    const from = q.get('resourceVersion') ?? '';
    this.stats.watches[resource].push(from);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    const w: Watcher = { resource, res, node, bookmarks: q.get('allowWatchBookmarks') === 'true' };
    const since = from === '' || from === '0' ? this.rv : Number(from);
    if (since < this.oldest) {
      this.stats.expired++;
      res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${since} (${this.oldest})`) })}\n`);
      return;
    }
    for (const c of this.history) if (c.resource === resource && c.rv > since) this.send(w, c);
    this.watchers.add(w);
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    if (timeout > 0) {
      w.timer = setTimeout(() => {
        this.watchers.delete(w);
        res.end();
      }, timeout * 1000);
    }
    res.on('close', () => {
      clearTimeout(w.timer);
      this.watchers.delete(w);
    });
  }
}
