// The governance sidecar's HAProxy: started in master-worker mode, its log lines turned into
// access records and metrics, reloaded seamlessly on a new version (SIGUSR2: new workers take over
// the listening sockets, old ones finish their connections), started again when it exits unasked,
// and soft-stopped at the end (SIGUSR1: requests in flight finish).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Codes, SockmeshError } from '../errors.js';
import { pipe, setPipeSize } from '../../native/process.js';
import { parseAccessLine, parseHandshakeFailure, type AccessRecord, type SidecarMetrics } from './accesslog.js';
import { adminQuery } from './runtime.js';

/** How long the workers answer `Connection: close` before a reload (see reload). */
export const DRAIN_MS = 300;

/** Unasked HAProxy exits within a minute after which the sidecar gives up (and exits). */
const RESTARTS_MAX = 5;

export interface HaproxyProcessOptions {
  cfgFile: string;
  runDir: string;
  metrics: SidecarMetrics;
  emit: (event: Record<string, unknown>) => void;
  /** Where the access records go: JSON lines, written in batches. */
  accessLog: (lines: string) => void;
  /** HAProxy keeps exiting: the caller should exit (the pod's restart policy acts). */
  onFatal?: (why: string) => void;
  /** Before HAProxy is started again after an exit (it starts with the rendered servers). */
  beforeRestart: () => void;
  /** The policy version it serves (for the restart event). */
  version: () => number;
  /** Each access record, after the metrics counted it (the span export). */
  onRecord?: (r: AccessRecord) => void;
}

export class HaproxyProcess {
  private haproxy: ChildProcess | undefined;
  private stopped = false;
  /** The version a reload was asked for, until HAProxy says it loaded. */
  private pending: number | undefined;
  /** When HAProxy exited unasked (the last minute's). */
  private exits: number[] = [];
  /** HAProxy's DroppedLogs as last read, by worker pid (it counts per worker). */
  private dropped = { pid: '', count: 0 };
  private droppedTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: HaproxyProcessOptions) {}

  get pid(): number | undefined {
    return this.haproxy?.pid;
  }

  async start(): Promise<void> {
    await this.launch();
    this.droppedTimer = setInterval(() => void this.readDropped(), 1000);
    this.droppedTimer.unref();
  }

  /**
   * A seamless reload onto the configuration file as it is now; `version` is announced once loaded.
   * HAProxy 2.6's old worker closes the keep-alive connections that are idle when it stops, and a
   * client that sends on one at that moment gets no answer (2.8's idle-close-on-response defers
   * it). So the running workers drain first: for DRAIN_MS every HTTP/1 response says
   * `Connection: close` (proc.sm_drain, HTTP_VARS), the clients reconnect, and few connections are
   * idle when the reload comes. Resolves when the reload is asked for.
   */
  async reload(version: number): Promise<void> {
    const hp = this.haproxy;
    // Bounded: a runtime API that does not answer delays the reload by a second at most.
    const drained = await adminQuery(join(this.opts.runDir, 'admin.sock'), 'experimental-mode on; set var proc.sm_drain int(1)', 1000).then((a) => a.trim() === '', () => false);
    if (drained) await new Promise((r) => setTimeout(r, DRAIN_MS));
    // Resolves once the new workers are asked for (their loading is announced as policy-applied).
    this.pending = version;
    if (this.haproxy === hp && !this.stopped) hp?.kill('SIGUSR2');
  }

  /**
   * Starts HAProxy (master-worker mode) on the current configuration and resolves once it has
   * loaded it. Its log lines become access records; an exit nobody asked for is supervised
   * (restartAfterExit).
   */
  private launch(): Promise<void> {
    // HAProxy's log goes into a pipe of 1 MiB: while the sidecar is slow to read (paused, busy),
    // HAProxy drops the lines it cannot write (it counts them: readDropped). Node's own stdio pipe
    // (a socket pair of ~200 KiB) held ~350 lines; this one ~6,000.
    const [readEnd, writeEnd] = pipe();
    setPipeSize(writeEnd, 1 << 20);
    let hp: ChildProcess;
    try {
      hp = spawn('haproxy', ['-W', '-db', '-f', this.opts.cfgFile], { stdio: ['ignore', writeEnd, 'pipe'] });
    } finally {
      closeSync(writeEnd);
    }
    this.haproxy = hp;
    const logs = new Socket({ fd: readEnd, readable: true, writable: false });
    // One access record per request: written in batches (one write per turn of the event loop).
    let batch: string[] = [];
    const flush = () => {
      const lines = batch.join('');
      batch = [];
      this.opts.accessLog(lines);
    };
    createInterface({ input: logs }).on('line', (line) => {
      const r = parseAccessLine(line);
      if (!r) {
        const failed = parseHandshakeFailure(line);
        if (failed) {
          this.opts.metrics.handshakeFailures.inc({ reason: failed.reason });
          this.opts.emit({ event: 'tls-handshake-failed', reason: failed.reason, client: line.split(' ')[0] });
        } else if (line.trim()) this.opts.metrics.unparsedLines.inc();
        return;
      }
      this.opts.metrics.observe(r);
      this.opts.onRecord?.(r);
      if (!batch.length) setImmediate(flush);
      batch.push(`${JSON.stringify({ event: 'access', ...r })}\n`);
    });
    return new Promise<void>((resolve, reject) => {
      let loaded = false;
      createInterface({ input: hp.stderr! }).on('line', (line) => {
        if (/Loading success/.test(line)) {
          loaded = true;
          this.opts.metrics.up.set(1);
          resolve();
          if (this.pending !== undefined) this.opts.emit({ event: 'policy-applied', version: this.pending });
          this.pending = undefined;
        }
        if (/\[(ALERT|WARNING)\]/.test(line)) this.opts.emit({ event: 'haproxy', line });
      });
      hp.once('exit', (code, signal) => {
        this.opts.metrics.up.set(0);
        if (!loaded) reject(new SockmeshError(Codes.INTERNAL, `haproxy exited (${code ?? signal}) before it was ready`));
        if (this.stopped || hp !== this.haproxy) return;
        this.restartAfterExit(code, signal);
      });
    });
  }

  /**
   * HAProxy exited unasked (its worker was killed: the master follows it): captured requests would
   * fail while /metrics answered. It is started again at once on the running version, backing off;
   * after RESTARTS_MAX exits in a minute the sidecar gives up, so the pod's restart policy acts.
   */
  private restartAfterExit(code: number | null, signal: NodeJS.Signals | null): void {
    const now = Date.now();
    this.exits = [...this.exits.filter((t) => now - t < 60_000), now];
    if (this.exits.length > RESTARTS_MAX) {
      const why = `haproxy exited ${this.exits.length} times within a minute (last: ${code ?? signal}); the sidecar stops so that the pod is restarted`;
      this.opts.emit({ event: 'error', message: why });
      this.opts.onFatal?.(why);
      return;
    }
    const delay = 50 * 2 ** (this.exits.length - 1);
    this.opts.emit({ event: 'haproxy-exited', code, signal, restartInMs: delay });
    setTimeout(() => {
      if (this.stopped) return;
      this.opts.beforeRestart();
      this.dropped = { pid: '', count: 0 };
      this.launch().then(() => {
        this.opts.metrics.restarts.inc();
        this.opts.emit({ event: 'haproxy-restarted', version: this.opts.version(), haproxyPid: this.haproxy?.pid });
      }, (err: Error) => this.opts.emit({ event: 'error', message: `haproxy did not start again: ${err.message}` }));
    }, delay);
  }

  /** HAProxy's DroppedLogs (per worker, since its start), as the dropped-lines counter's increase. */
  private async readDropped(): Promise<void> {
    if (this.stopped) return;
    let info: string;
    try {
      info = await adminQuery(join(this.opts.runDir, 'admin.sock'), 'show info');
    } catch {
      return; // reloading or restarting: read at the next tick
    }
    const pid = /^Pid: (\d+)/m.exec(info)?.[1] ?? '';
    const count = Number(/^DroppedLogs: (\d+)/m.exec(info)?.[1] ?? 0);
    const before = pid === this.dropped.pid ? this.dropped.count : 0;
    if (count > before) this.opts.metrics.droppedLines.inc(count - before);
    this.dropped = { pid, count };
  }

  /**
   * Stops gracefully: HAProxy's soft stop (SIGUSR1 to the master) closes the listeners and lets the
   * requests in flight finish, within graceMs; what is still running then is stopped hard.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearInterval(this.droppedTimer);
    const hp = this.haproxy;
    if (hp && hp.exitCode === null && hp.signalCode === null) {
      const gone = new Promise((r) => hp.once('exit', r));
      hp.kill('SIGUSR1');
      const grace = setTimeout(() => hp.kill('SIGTERM'), graceMs);
      const last = setTimeout(() => hp.kill('SIGKILL'), (graceMs) + 3000);
      await gone;
      clearTimeout(grace);
      clearTimeout(last);
    }
    await this.readDropped().catch(() => undefined);
  }
}
