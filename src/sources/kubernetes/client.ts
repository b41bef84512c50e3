// Talking to the API server: credentials from client-node's KubeConfig (in-cluster service account
// or a kubeconfig), paginated lists, watches through client-node's informer cache (ListWatch), and
// Events. Around client-node 1.x:
// - its ListWatch stops for good on an error (a refused connection, a reset mid-stream, a failed
//   list): `ResilientInformer` restarts it with exponential backoff and full jitter, from the last
//   resourceVersion it saw (a 410 Gone there makes ListWatch relist);
// - its Watch does not ask for bookmarks: `BookmarkWatch` adds allowWatchBookmarks, so a quiet
//   resource's resourceVersion keeps moving and a resume does not fall out of the server's window;
// - lists go through our own paginated GET (limit/continue) and every object is trimmed to the
//   fields sockmesh reads before the cache keeps it, on lists and watch events alike.
import { KubeConfig, ListWatch, Watch, type KubernetesObject, type ListPromise } from '@kubernetes/client-node';
import fetch, { type RequestInit } from 'node-fetch';
import { Codes, SockmeshError, UserError, describe } from '../../errors.js';
import type { Meta } from './translate.js';

export type Trim<T> = (o: T) => T;

/** Loads credentials: a kubeconfig file when given (else KUBECONFIG, else in-cluster, else ~/.kube/config). */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (cause) {
    throw new UserError(Codes.USAGE, `cannot load the Kubernetes credentials${path ? ` from ${path}` : ''}: ${describe(cause)}`, { cause });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new UserError(Codes.USAGE, 'no Kubernetes cluster configured: run in a pod (in-cluster config) or pass --kubeconfig / set KUBECONFIG');
  }
  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    throw new UserError(Codes.USAGE, `the kubeconfig's cluster server ${JSON.stringify(cluster.server)} is not a URL: write https://HOST:PORT`);
  }
  if (url.protocol === 'http:') {
    // kubectl proxy serves plain HTTP on the loopback: taken as it is. client-node refuses http://
    // unless TLS checks are switched off (there is no TLS to check): it is told so. Anywhere else
    // plain HTTP would carry the credentials in the clear.
    if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(url.hostname)) {
      throw new UserError(Codes.USAGE, `the kubeconfig's cluster server is ${cluster.server}: plain HTTP would send the credentials unencrypted, and sockmesh takes http:// only on the loopback (kubectl proxy); use the cluster's https:// address`);
    }
    kc.clusters = kc.clusters.map((c) => (c.name === cluster.name ? { ...c, skipTLSVerify: true } : c));
  } else if (url.protocol !== 'https:') {
    throw new UserError(Codes.USAGE, `the kubeconfig's cluster server ${cluster.server} is neither https:// nor (on the loopback) http://`);
  }
  return kc;
}

/**
 * A request to the API server with the kubeconfig's credentials; it gives up after `timeoutMs`
 * (a server that hangs without closing the connection must not hold the source forever).
 */
export async function apiRequest(kc: KubeConfig, path: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<{ status: number; body: unknown }> {
  const { timeoutMs = 30_000, ...rest } = init;
  const base = await kc.applyToFetchOptions({});
  const headers = base.headers as unknown as { set(k: string, v: string): void };
  for (const [k, v] of Object.entries((rest.headers ?? {}) as Record<string, string>)) headers.set(k, v);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let res;
  let text: string;
  try {
    res = await fetch(kc.getCurrentCluster()!.server + path, { ...(base as unknown as RequestInit), ...rest, headers: base.headers as RequestInit['headers'], signal: abort.signal as RequestInit['signal'] });
    text = await res.text();
  } catch (e) {
    if (abort.signal.aborted) throw new ApiError(0, `${path}: no answer from the API server within ${timeoutMs} ms`);
    throw e;
  } finally {
    clearTimeout(timer);
  }
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch { /* not JSON: kept as text */ }
  return { status: res.status, body };
}

/** The error a failed request turns into (statusCode is what ListWatch looks at for 410). */
export class ApiError extends SockmeshError {
  constructor(readonly statusCode: number, message: string) {
    super(Codes.SYSCALL, message);
  }
}

interface ListBody<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: T[];
}

/** Lists a collection page by page (limit/continue), trimming each item; resourceVersion of the
 * list (the last page's, which the continue token pins to the first page's snapshot). */
export async function listAll<T>(kc: KubeConfig, path: string, query: Record<string, string>, trim: Trim<T>, pageSize = 500):
  Promise<{ metadata: { resourceVersion: string }; items: T[] }> {
  const items: T[] = [];
  let cont = '';
  let rv = '';
  do {
    const q = new URLSearchParams({ ...query, limit: String(pageSize), ...(cont ? { continue: cont } : {}) });
    const { status, body } = await apiRequest(kc, `${path}?${q}`);
    if (status !== 200) {
      const message = (body as { message?: string })?.message ?? String(body).slice(0, 200);
      throw new ApiError(status, `list ${path}: HTTP ${status}: ${message}`);
    }
    const page = body as ListBody<T>;
    for (const it of page.items ?? []) items.push(trim(it));
    rv = page.metadata?.resourceVersion ?? rv;
    cont = page.metadata?.continue ?? '';
  } while (cont);
  return { metadata: { resourceVersion: rv }, items };
}

/**
 * client-node's Watch with bookmarks asked for, a server-side timeout (5-10 minutes, spread so a
 * node's watches do not all reconnect at once, as client-go does), objects trimmed, and a call
 * when the server has accepted the watch.
 */
export class BookmarkWatch extends Watch {
  constructor(kc: KubeConfig, private readonly trim: Trim<unknown>, private readonly onConnected: () => void) {
    super(kc);
  }

  override async watch(path: string, queryParams: Record<string, unknown>, callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    let failed = false;
    const params = { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: 300 + Math.floor(Math.random() * 300) };
    const controller = await super.watch(path, params, (phase, obj, raw) => {
      callback(phase, phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED' ? this.trim(obj) : obj, raw);
    }, (err) => {
      failed = true;
      done(err);
    });
    if (!failed) this.onConnected();
    return controller;
  }
}

export interface InformerEvents<T> {
  add(o: T): void;
  update(o: T): void;
  delete(o: T): void;
  /** The first complete list is in the cache (and again after each relist). */
  listed(): void;
  /** A list or watch failed; the informer restarts after `retryInMs`. */
  failed(err: unknown, retryInMs: number): void;
  /** A list succeeded or a watch was accepted: the cache is current again. */
  connected(): void;
}

export interface InformerOptions {
  /** Backoff of restarts after errors: first delay and cap (full jitter in [delay/2, delay]). */
  backoffMs?: { initial: number; max: number };
  pageSize?: number;
}

/** One collection, listed and watched, restarted after any error. */
export class ResilientInformer<T extends KubernetesObject> {
  private readonly lw: ListWatch<T>;
  private attempt = 0;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(kc: KubeConfig, readonly path: string, query: Record<string, string>, trim: Trim<T>, private readonly events: InformerEvents<T>, private readonly opts: InformerOptions = {}) {
    const watch = new BookmarkWatch(kc, trim as Trim<unknown>, () => this.ok());
    const list: ListPromise<T> = async () => {
      const l = await listAll(kc, path, query, trim, opts.pageSize);
      // ListWatch fills its cache from these items right after this promise resolves; the
      // timer runs once that is done.
      setTimeout(() => {
        if (this.stopped) return;
        this.ok();
        events.listed();
      }, 0);
      return l;
    };
    this.lw = new ListWatch<T>(path, watch, list, false, undefined, query.fieldSelector);
    this.lw.on('add', (o) => events.add(o));
    this.lw.on('update', (o) => events.update(o));
    this.lw.on('delete', (o) => events.delete(o));
    this.lw.on('error', (err) => this.onError(err));
  }

  private ok(): void {
    this.attempt = 0;
    this.events.connected();
  }

  private onError(err: unknown): void {
    if (this.stopped) return;
    const { initial, max } = this.opts.backoffMs ?? { initial: 250, max: 30_000 };
    const cap = Math.min(max, initial * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    const delay = Math.round(cap / 2 + Math.random() * cap / 2);
    this.events.failed(err, delay);
    clearTimeout(this.retry);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (!this.stopped) void this.lw.start();
    }, delay);
  }

  /** A restart waiting for its backoff happens now (the server answers again). */
  retryNow(): void {
    if (this.stopped || !this.retry) return;
    clearTimeout(this.retry);
    this.retry = undefined;
    void this.lw.start();
  }

  start(): void {
    this.stopped = false;
    void this.lw.start();
  }

  /** Drops the list or watch in progress (the server stopped answering) and starts again after the
   * backoff; nothing when a restart is already waiting. */
  restart(why: Error): void {
    if (this.stopped || this.retry) return;
    void this.lw.stop();
    this.onError(why);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    void this.lw.stop();
  }
}

/** Posts a Warning Event about an object (best effort: a failure is returned, never thrown). */
export async function postEvent(kc: KubeConfig, obj: { kind: string; apiVersion: string; metadata: Meta }, node: string, reason: string, message: string): Promise<string | undefined> {
  const ns = obj.metadata.namespace ?? 'default';
  const now = new Date().toISOString();
  const event = {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { generateName: `${obj.metadata.name}.`, namespace: ns },
    involvedObject: { kind: obj.kind, apiVersion: obj.apiVersion, name: obj.metadata.name, namespace: ns, uid: obj.metadata.uid, resourceVersion: obj.metadata.resourceVersion },
    reason,
    message: message.slice(0, 1024),
    type: 'Warning',
    source: { component: 'sockmesh', host: node },
    reportingComponent: 'sockmesh.io/agent',
    reportingInstance: node,
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
  try {
    const r = await apiRequest(kc, `/api/v1/namespaces/${encodeURIComponent(ns)}/events`, {
      method: 'POST', body: JSON.stringify(event), headers: { 'Content-Type': 'application/json' },
    });
    return r.status === 201 || r.status === 200 ? undefined : `HTTP ${r.status}`;
  } catch (e) {
    return describe(e);
  }
}
