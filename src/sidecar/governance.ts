// `sockmesh sidecar --config FILE`: the governance sidecar. HAProxy is the data path (src/sidecar/
// haproxy.ts renders its configuration from the policy); this process supervises it in master-
// worker mode, turns its log lines into the access log and metrics, and applies new policy
// versions without dropping connections: a version that only changes endpoints goes through the
// runtime API (src/sidecar/runtime.ts: no reload at all); any other is checked with `haproxy -c`
// first (a bad one is refused and the last good version keeps serving), then the master reloads
// seamlessly (SIGUSR2: new workers take over the listening sockets, old ones finish their
// connections).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, readFileSync, renameSync, unwatchFile, watchFile, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loadConfig } from '../config/load.js';
import type { MeshConfig } from '../config/model.js';
import { Codes, SockmeshError } from '../errors.js';
import { execTool } from '../util/exec.js';
import { SidecarMetrics, parseAccessLine } from './accesslog.js';
import { renderHaproxy } from './haproxy.js';
import { adminCommand, adminQuery, afterCommands, renderedServers, runtimePlan, type RuntimeServers } from './runtime.js';
import { pipe, setPipeSize } from '../../native/process.js';
import { Socket } from 'node:net';

export interface GovernanceOptions {
  /** The policy file (the first version, and every version while no agent serves one). */
  configPath: string;
  /** The agent's control socket: its policy versions win over the file's while it runs. */
  agentSocket?: string;
  /** This sidecar's name for the agent (status shows it), e.g. the pod's. */
  sidecarId?: string;
  runDir: string;
  /** host:port of the sidecar's own /metrics; empty: none. */
  metricsListen: string;
  /** One JSON object per event (ready, access, policy, error). */
  emit: (event: Record<string, unknown>) => void;
  /** Where the access records go: JSON lines, written in batches (default: `emit`'s stream). */
  accessLog: (lines: string) => void;
  /** How often the config file is looked at (ms). */
  pollMs?: number;
  /** On SIGTERM, how long in-flight requests get to finish before HAProxy is stopped hard. */
  stopGraceMs?: number;
  /** HAProxy keeps exiting (more than 5 times in a minute): the caller should exit (the pod's restart policy acts). */
  onFatal?: (why: string) => void;
}

/** Unasked HAProxy exits within a minute after which the sidecar gives up (and exits). */
const RESTARTS_MAX = 5;

export class GovernanceSidecar {
  private haproxy: ChildProcess | undefined;
  private metricsServer: Server | undefined;
  private version = 0;
  private lastGood = '';
  /** The config the running HAProxy serves, and the servers it has (for runtime-API updates). */
  private running: MeshConfig | undefined;
  private servers: RuntimeServers = new Map();
  /** Policy versions are applied one after another. */
  private applying: Promise<unknown> = Promise.resolve();
  readonly metrics = new SidecarMetrics();
  private readonly cfgFile: string;
  private stopped = false;
  /** The version a reload was asked for, until HAProxy says it loaded. */
  private pending: number | undefined;
  /** The agent's policy version last applied (0: none yet, the file's policy runs). */
  private agentVersion = 0;
  /** The agent's version this sidecar refused (0: none), so its long poll waits for a newer one. */
  private refusedAgent = 0;
  /** When HAProxy exited unasked (the last minute's). */
  private exits: number[] = [];
  /** HAProxy's DroppedLogs as last read, by worker pid (it counts per worker). */
  private dropped = { pid: '', count: 0 };
  private droppedTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: GovernanceOptions) {
    this.cfgFile = join(opts.runDir, 'haproxy.cfg');
  }

  private render(cfg: MeshConfig, version: number): string {
    return renderHaproxy(cfg, { sidecar: cfg.sidecar, runDir: this.opts.runDir, version: String(version), dropPrivileges: process.getuid?.() === 0 });
  }

  /** Checks a rendered configuration with HAProxy itself; throws with HAProxy's complaint. */
  private async check(text: string): Promise<void> {
    const file = join(this.opts.runDir, 'haproxy.cfg.next');
    writeFileSync(file, text);
    const r = await execTool('haproxy', ['-c', '-f', file]);
    if (r.code !== 0) {
      // Its [ALERT] lines say why (-q would silence them); the last lines when there are none.
      const lines = `${r.stderr}\n${r.stdout}`.split('\n').map((l) => l.trim()).filter(Boolean);
      const alerts = lines.filter((l) => l.includes('[ALERT]') && !/Fatal errors found/.test(l)).map((l) => l.replace(/^\[ALERT\]\s*\(\d+\)\s*:\s*/, ''));
      throw new SockmeshError(Codes.CONFIG_INVALID, `HAProxy refuses the rendered configuration: ${(alerts.length ? alerts : lines.slice(-3)).slice(0, 3).join(' | ')}`);
    }
    renameSync(file, this.cfgFile);
  }

  async start(): Promise<void> {
    mkdirSync(this.opts.runDir, { recursive: true, mode: 0o700 });
    const cfg = loadConfig(this.opts.configPath);
    const text = this.render(cfg, 1);
    await this.check(text);
    this.version = 1;
    this.lastGood = readFileSync(this.opts.configPath, 'utf8');
    this.running = cfg;
    this.servers = renderedServers(cfg);
    this.metrics.version.set(1);
    await this.launch();
    if (this.opts.metricsListen) await this.serveMetrics();
    watchFile(this.opts.configPath, { interval: this.opts.pollMs ?? 200 }, () => {
      // While an agent serves the policy, its versions win over the file's.
      if (this.agentVersion) return;
      this.applying = this.applying.then(() => this.fromFile());
    });
    this.opts.emit({ event: 'ready', version: this.version, haproxyPid: this.haproxy?.pid, config: this.cfgFile });
    if (this.opts.agentSocket) void this.followAgent(this.opts.agentSocket);
    this.droppedTimer = setInterval(() => void this.readDropped(), 1000);
    this.droppedTimer.unref();
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
      hp = spawn('haproxy', ['-W', '-db', '-f', this.cfgFile], { stdio: ['ignore', writeEnd, 'pipe'] });
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
        if (line.trim()) this.metrics.unparsedLines.inc();
        return;
      }
      this.metrics.observe(r);
      if (!batch.length) setImmediate(flush);
      batch.push(`${JSON.stringify({ event: 'access', ...r })}\n`);
    });
    return new Promise<void>((resolve, reject) => {
      let loaded = false;
      createInterface({ input: hp.stderr! }).on('line', (line) => {
        if (/Loading success/.test(line)) {
          loaded = true;
          this.metrics.up.set(1);
          resolve();
          if (this.pending !== undefined) this.opts.emit({ event: 'policy-applied', version: this.pending });
          this.pending = undefined;
        }
        if (/\[(ALERT|WARNING)\]/.test(line)) this.opts.emit({ event: 'haproxy', line });
      });
      hp.once('exit', (code, signal) => {
        this.metrics.up.set(0);
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
      this.servers = this.running ? renderedServers(this.running) : new Map();
      this.dropped = { pid: '', count: 0 };
      this.launch().then(() => {
        this.metrics.restarts.inc();
        this.opts.emit({ event: 'haproxy-restarted', version: this.version, haproxyPid: this.haproxy?.pid });
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
    if (count > before) this.metrics.droppedLines.inc(count - before);
    this.dropped = { pid, count };
  }

  /** A new version of the policy file (read once it has stopped changing). */
  private async fromFile(): Promise<void> {
    let text: string;
    let cfg: MeshConfig;
    try {
      text = await settledText(this.opts.configPath);
      if (text === this.lastGood) return;
      cfg = loadConfig(this.opts.configPath);
    } catch (err) {
      this.opts.emit({ event: 'policy-refused', version: this.version, error: (err as Error).message });
      return;
    }
    await this.apply(cfg, text, 'file');
  }

  /**
   * The agent's policy versions, by long poll on its control socket (it answers when its version
   * differs from the one this sidecar has, or after a while): each new one is applied. While the
   * agent is away the last good version keeps serving; the sidecar tries again every second.
   */
  private async followAgent(socket: string): Promise<void> {
    const { request } = await import('../control/client.js');
    let away = false;
    while (!this.stopped) {
      try {
        const sidecar = { id: this.opts.sidecarId ?? String(process.pid), version: this.version, ...(this.refusedAgent ? { refused: this.refusedAgent } : {}) };
        const r = await request(socket, { op: 'policy', have: this.agentVersion, sidecar }, 40_000) as
          { version: number; config?: MeshConfig };
        if (away) this.opts.emit({ event: 'agent', reachable: true });
        away = false;
        if (r.config && r.version !== this.agentVersion && r.version !== this.refusedAgent) {
          const run = this.applying.then(() => this.apply(r.config!, `agent version ${r.version}`, 'agent'));
          this.applying = run;
          const ok = await run;
          // A refused version is not asked for again (the agent answers with the next one).
          if (ok) this.agentVersion = r.version;
          this.refusedAgent = ok ? 0 : r.version;
        }
      } catch (err) {
        if (this.stopped) return;
        if (!away) this.opts.emit({ event: 'agent', reachable: false, error: (err as Error).message });
        away = true;
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  }

  /** A new policy version: checked, then applied through the runtime API (endpoints only) or a
   * seamless reload; a bad one is refused and the running version stays. Returns whether it runs. */
  private async apply(cfg: MeshConfig, text: string, from: 'file' | 'agent'): Promise<boolean> {
    try {
      await this.check(this.render(cfg, this.version + 1));
    } catch (err) {
      this.opts.emit({ event: 'policy-refused', version: this.version, from, error: (err as Error).message });
      return false;
    }
    const version = this.version + 1;
    const plan = this.running ? runtimePlan(this.running, cfg, this.servers) : undefined;
    if (plan) {
      try {
        for (const cmd of plan) await adminCommand(join(this.opts.runDir, 'admin.sock'), cmd);
        this.servers = afterCommands(this.servers, plan);
        this.applied(text, cfg, version);
        this.opts.emit({ event: 'policy', version, from, via: 'runtime', commands: plan.length });
        this.opts.emit({ event: 'policy-applied', version });
        return true;
      } catch (err) {
        // Half-applied through the runtime API: a reload puts HAProxy exactly on the new version.
        this.opts.emit({ event: 'haproxy', line: `runtime update failed, reloading instead: ${(err as Error).message}` });
      }
    }
    this.applied(text, cfg, version);
    this.servers = renderedServers(cfg);
    this.pending = version;
    this.haproxy?.kill('SIGUSR2');
    this.opts.emit({ event: 'policy', version, from, via: 'reload' });
    return true;
  }

  private applied(text: string, cfg: MeshConfig, version: number): void {
    this.version = version;
    this.lastGood = text;
    this.running = cfg;
    this.metrics.version.set(version);
  }

  private serveMetrics(): Promise<void> {
    const [host, port] = [this.opts.metricsListen.slice(0, this.opts.metricsListen.lastIndexOf(':')), Number(this.opts.metricsListen.slice(this.opts.metricsListen.lastIndexOf(':') + 1))];
    this.metricsServer = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.metrics.registry.metrics().then((body) => {
        res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(body);
      }, (err: Error) => res.writeHead(500).end(err.message));
    });
    return new Promise((resolve, reject) => {
      this.metricsServer!.once('error', reject);
      this.metricsServer!.listen(port, host, () => resolve());
    });
  }


  /**
   * Stops gracefully: HAProxy's soft stop (SIGUSR1 to the master) closes the listeners and lets the
   * requests in flight finish, within stopGraceMs; what is still running then is stopped hard.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.droppedTimer);
    unwatchFile(this.opts.configPath);
    const hp = this.haproxy;
    if (hp && hp.exitCode === null && hp.signalCode === null) {
      const gone = new Promise((r) => hp.once('exit', r));
      hp.kill('SIGUSR1');
      const grace = setTimeout(() => hp.kill('SIGTERM'), this.opts.stopGraceMs ?? 10_000);
      const last = setTimeout(() => hp.kill('SIGKILL'), (this.opts.stopGraceMs ?? 10_000) + 3000);
      await gone;
      clearTimeout(grace);
      clearTimeout(last);
    }
    await this.readDropped().catch(() => undefined);
    this.metricsServer?.close();
  }
}

/**
 * The file's text once a write has finished: a file written in place (truncated, then written, as
 * `cat >` or most scripts do) reads empty or cut short in between, which is not a version to refuse.
 * Two reads 100 ms apart must agree and not be empty; after 2 s the last read is what the file says.
 */
async function settledText(path: string): Promise<string> {
  let text = readFileSync(path, 'utf8');
  for (let i = 0; i < 20; i++) {
    await new Promise((res) => setTimeout(res, 100));
    const again = readFileSync(path, 'utf8');
    if (again === text && text.trim() !== '') return text;
    text = again;
  }
  return text;
}
