// `sockmesh sidecar --config FILE`: the governance sidecar. HAProxy is the data path (src/sidecar/
// haproxy.ts renders its configuration from the policy); this process supervises it in master-
// worker mode, turns its log lines into the access log and metrics, and applies new policy
// versions without dropping connections: a version that only changes endpoints goes through the
// runtime API (src/sidecar/runtime.ts: no reload at all); any other is checked with `haproxy -c`
// first (a bad one is refused and the last good version keeps serving), then the master reloads
// seamlessly. HAProxy's process is haproxy-process.ts; where versions come from (the agent, the
// file), policy-follow.ts.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { loadConfig } from '../config/load.js';
import type { MeshConfig } from '../config/model.js';
import { Codes, SockmeshError } from '../errors.js';
import { execTool } from '../util/exec.js';
import { SidecarMetrics } from './accesslog.js';
import { renderHaproxy } from './haproxy.js';
import { HaproxyProcess } from './haproxy-process.js';
import { PolicyFollower } from './policy-follow.js';
import { adminCommand, afterCommands, renderedServers, runtimePlan, type RuntimeServers } from './runtime.js';

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

export class GovernanceSidecar {
  private readonly haproxy: HaproxyProcess;
  private readonly follower: PolicyFollower;
  private metricsServer: Server | undefined;
  private version = 0;
  private lastGood = '';
  /** The config the running HAProxy serves, and the servers it has (for runtime-API updates). */
  private running: MeshConfig | undefined;
  private servers: RuntimeServers = new Map();
  readonly metrics = new SidecarMetrics();
  private readonly cfgFile: string;

  constructor(private readonly opts: GovernanceOptions) {
    this.cfgFile = join(opts.runDir, 'haproxy.cfg');
    this.haproxy = new HaproxyProcess({
      cfgFile: this.cfgFile, runDir: opts.runDir, metrics: this.metrics, emit: opts.emit, accessLog: opts.accessLog, onFatal: opts.onFatal,
      beforeRestart: () => { this.servers = this.running ? renderedServers(this.running) : new Map(); },
      version: () => this.version,
    });
    this.follower = new PolicyFollower(opts, {
      apply: (cfg, text, from) => this.apply(cfg, text, from), version: () => this.version, lastGood: () => this.lastGood,
    });
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
    await this.haproxy.start();
    if (this.opts.metricsListen) await this.serveMetrics();
    this.opts.emit({ event: 'ready', version: this.version, haproxyPid: this.haproxy.pid, config: this.cfgFile });
    this.follower.start();
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
    this.haproxy.reload(version);
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
   * Stops gracefully: HAProxy's soft stop closes the listeners and lets the requests in flight
   * finish, within stopGraceMs; what is still running then is stopped hard.
   */
  async stop(): Promise<void> {
    this.follower.stop();
    await this.haproxy.stop(this.opts.stopGraceMs ?? 10_000);
    this.metricsServer?.close();
  }
}
