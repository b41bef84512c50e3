// `sockmesh sidecar --config FILE`: the governance sidecar. HAProxy is the data path (src/sidecar/
// haproxy.ts renders its configuration from the policy); this process supervises it in master-
// worker mode, turns its log lines into the access log and metrics, and applies new policy
// versions without dropping connections: a version that only changes endpoints goes through the
// runtime API (src/sidecar/runtime.ts: no reload at all); any other is checked with `haproxy -c`
// first (a bad one is refused and the last good version keeps serving), then the master reloads
// seamlessly. HAProxy's process is haproxy-process.ts; where versions come from (the agent, the
// file), policy-follow.ts.
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import type { MeshConfig, TracingConfig } from '../config/model.js';
import type { WorkloadPolicy } from '../config/workload.js';
import { Codes, SockmeshError, describe } from '../errors.js';
import { execTool } from '../util/exec.js';
import { SidecarMetrics } from './accesslog.js';
import { renderHaproxy } from './haproxy.js';
import { TRAFFIC_LUA } from './routes.js';
import { SpanExport, spanMetrics } from './spans.js';
import { HaproxyProcess } from './haproxy-process.js';
import { IdentityFollower, type PodIdentity } from './identity-follow.js';
import { needsIdentity, renderLua, type SidecarSecurity } from './security.js';
import { PolicyFollower } from './policy-follow.js';
import { adminCommand, adminQuery, afterCommands, renderedServers, runtimePlan, type RuntimeServers } from './runtime.js';
import { endpointTls } from './security.js';

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
  /** The pod's workload security HAProxy runs with (from the agent), if any. */
  private workload: WorkloadPolicy | undefined;
  private readonly identity: IdentityFollower | undefined;
  readonly metrics = new SidecarMetrics();
  private readonly spanMetrics = spanMetrics(this.metrics.registry);
  /** The span export of the running version's tracing settings, if it has any. */
  private spans: SpanExport | undefined;
  private readonly cfgFile: string;
  private readonly root = process.getuid?.() === 0;
  /** Whether the last rendering had the pod's certificate in it. */
  private renderedWithCert = false;
  /** Following an agent: inbound is refused until its first answer (it says the pod's mTLS mode). */
  private agentAnswered = false;

  constructor(private readonly opts: GovernanceOptions) {
    this.cfgFile = join(opts.runDir, 'haproxy.cfg');
    this.haproxy = new HaproxyProcess({
      cfgFile: this.cfgFile, runDir: opts.runDir, metrics: this.metrics, emit: opts.emit, accessLog: opts.accessLog, onFatal: opts.onFatal,
      beforeRestart: () => { this.servers = this.running ? renderedServers(this.running) : new Map(); },
      version: () => this.version,
      onRecord: (r) => this.spans?.record(r),
    });
    this.follower = new PolicyFollower(opts, {
      apply: (cfg, text, from, workload) => this.apply(cfg, text, from, workload), version: () => this.version, lastGood: () => this.lastGood,
    });
    if (opts.agentSocket) this.identity = new IdentityFollower({ agentSocket: opts.agentSocket, runDir: opts.runDir, emit: opts.emit });
  }

  private render(cfg: MeshConfig, version: number, sec: SidecarSecurity | undefined, open = this.agentAnswered): string {
    this.renderedWithCert = sec?.certFile !== undefined;
    const trafficLua = join(this.opts.runDir, 'traffic.lua');
    if (!existsSync(trafficLua)) writeFileSync(trafficLua, TRAFFIC_LUA, { mode: 0o644 });
    return renderHaproxy(cfg, {
      sidecar: cfg.sidecar, runDir: this.opts.runDir, version: String(version), dropPrivileges: this.root, security: sec,
      inboundClosed: this.opts.agentSocket !== undefined && !open, trafficLua,
    });
  }

  /** Where HAProxy finds the pod's identity and the Lua of its policy (a file per content, so a refused version never touches the running one's). */
  private security(cfg: MeshConfig, workload: WorkloadPolicy | undefined): SidecarSecurity | undefined {
    if (!workload) return undefined;
    if (this.root) reachableBy(this.opts.runDir, cfg.sidecar.uid);
    const mtlsDir = join(this.opts.runDir, 'mtls');
    mkdirSync(mtlsDir, { recursive: true, mode: 0o700 });
    if (this.root) chownSync(mtlsDir, cfg.sidecar.uid, cfg.sidecar.gid);
    const sec: SidecarSecurity = {
      workload, rootsFile: this.identity?.rootsFile ?? '', luaFile: '', mtlsSocket: join(mtlsDir, 'in.sock'),
      ...(this.identity?.current ? { certFile: this.identity.certFile } : {}), ...(this.root ? { uid: cfg.sidecar.uid } : {}),
    };
    const lua = renderLua(sec);
    sec.luaFile = join(this.opts.runDir, `policy-${createHash('sha256').update(lua).digest('hex').slice(0, 12)}.lua`);
    if (!existsSync(sec.luaFile)) writeFileSync(sec.luaFile, lua, { mode: 0o644 });
    return sec;
  }

  /** The pod's identity, before a workload that needs one is rendered (without one, no port takes mTLS and STRICT ones refuse everything). */
  private async ensureIdentity(cfg: MeshConfig, workload: WorkloadPolicy | undefined): Promise<void> {
    if (!workload || !this.identity || this.identity.current || !needsIdentity(workload)) return;
    try {
      const id = await this.identity.first();
      this.opts.emit({ event: 'identity', spiffeId: id.spiffeId, serial: id.serial, notAfter: id.notAfter });
      if (this.root) for (const f of [this.identity.certFile, this.identity.rootsFile]) chownSync(f, cfg.sidecar.uid, cfg.sidecar.gid);
    } catch (err) {
      // Rendered without one; the follower keeps asking, and the first certificate it gets is rendered in.
      this.opts.emit({ event: 'identity-error', error: describe(err) });
    }
    this.identity.follow((id, rootsChanged) => this.renewed(id, rootsChanged));
  }

  /** The running version rendered again (the pod's first certificate arrived after it), and reloaded. */
  private async rerender(): Promise<void> {
    const cfg = this.running!;
    const version = this.version + 1;
    await this.check(this.render(cfg, version, this.security(cfg, this.workload)));
    this.applied(this.lastGood, cfg, version, this.workload);
    this.servers = renderedServers(cfg);
    await this.haproxy.reload(version);
    this.opts.emit({ event: 'policy', version, from: 'identity', via: 'reload' });
  }

  /** A renewed certificate into the running HAProxy (new handshakes use it; no reload); a new trust bundle reloads; the first one, after a failure, is rendered in. */
  private async renewed(id: PodIdentity, rootsChanged: boolean): Promise<void> {
    if (this.root && this.running) {
      for (const f of [this.identity!.certFile, this.identity!.rootsFile]) chownSync(f, this.running.sidecar.uid, this.running.sidecar.gid);
    }
    if (this.running && this.workload && !this.renderedWithCert) {
      await this.rerender();
      return;
    }
    if (rootsChanged) {
      await this.haproxy.reload(this.version);
      return;
    }
    const sock = join(this.opts.runDir, 'admin.sock');
    const file = this.identity!.certFile;
    const set = await adminQuery(sock, `set ssl cert ${file} <<\n${id.certChain}${id.key}`);
    if (!/Transaction (created|updated)/.test(set)) throw new SockmeshError(Codes.INTERNAL, `HAProxy refused the renewed certificate: ${set.trim().slice(0, 200)}`);
    const commit = await adminQuery(sock, `commit ssl cert ${file}`);
    if (!/Success!/.test(commit)) throw new SockmeshError(Codes.INTERNAL, `HAProxy could not commit the renewed certificate: ${commit.trim().slice(0, 200)}`);
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
    // HAProxy's workers (the sidecar uid) pass through it to the mTLS socket (mtls/, theirs); every file in it is 0600 but the rendered config.
    mkdirSync(this.opts.runDir, { recursive: true, mode: 0o711 });
    try {
      chmodSync(this.opts.runDir, 0o711);
    } catch { /* not ours to change (a non-root sidecar's given directory): reachableBy says so if it matters */ }
    const cfg = loadConfig(this.opts.configPath);
    const text = this.render(cfg, 1, undefined);
    await this.check(text);
    this.version = 1;
    this.lastGood = readFileSync(this.opts.configPath, 'utf8');
    this.running = cfg;
    this.traceTo(cfg.tracing);
    this.servers = renderedServers(cfg);
    this.metrics.version.set(1);
    await this.haproxy.start();
    if (this.opts.metricsListen) await this.serveMetrics();
    this.opts.emit({ event: 'ready', version: this.version, haproxyPid: this.haproxy.pid, config: this.cfgFile, ...(this.opts.agentSocket ? { inbound: 'refused until the agent answers' } : {}) });
    this.follower.start();
  }

  /** A new policy version: checked, then applied through the runtime API (endpoints only) or a
   * seamless reload; a bad one is refused and the running version stays. Returns whether it runs. */
  private async apply(cfg: MeshConfig, text: string, from: 'file' | 'agent', workload?: WorkloadPolicy): Promise<boolean> {
    if (!workload && this.workload) {
      // The agent no longer says who this pod is (it lost track of it for a moment, or it left the
      // mesh): its security stays as it was, never dropped to none while capture may go on.
      workload = this.workload;
      this.opts.emit({ event: 'workload-kept', reason: `${from === 'agent' ? 'the agent\'s' : 'the file\'s'} version has no workload for this pod: its mTLS and authorization stay` });
    }
    await this.ensureIdentity(cfg, workload);
    const sec = this.security(cfg, workload);
    // The agent's first version opens inbound (a reload, never the runtime API).
    const opening = from === 'agent' && !this.agentAnswered;
    try {
      await this.check(this.render(cfg, this.version + 1, sec, this.agentAnswered || from === 'agent'));
    } catch (err) {
      this.opts.emit({ event: 'policy-refused', version: this.version, from, error: (err as Error).message });
      return false;
    }
    if (from === 'agent') this.agentAnswered = true;
    const version = this.version + 1;
    const sameSecurity = !opening && JSON.stringify(workload ?? null) === JSON.stringify(this.workload ?? null);
    const plan = this.running && sameSecurity ? runtimePlan(this.running, cfg, this.servers, (e, s) => endpointTls(sec, e, s)) : undefined;
    if (plan) {
      try {
        for (const cmd of plan) await adminCommand(join(this.opts.runDir, 'admin.sock'), cmd);
        this.servers = afterCommands(this.servers, plan);
        this.applied(text, cfg, version, workload);
        this.opts.emit({ event: 'policy', version, from, via: 'runtime', commands: plan.length });
        this.opts.emit({ event: 'policy-applied', version });
        return true;
      } catch (err) {
        // Half-applied through the runtime API: a reload puts HAProxy exactly on the new version.
        this.opts.emit({ event: 'haproxy', line: `runtime update failed, reloading instead: ${(err as Error).message}` });
      }
    }
    this.applied(text, cfg, version, workload);
    this.servers = renderedServers(cfg);
    await this.haproxy.reload(version);
    this.opts.emit({ event: 'policy', version, from, via: 'reload' });
    return true;
  }

  private applied(text: string, cfg: MeshConfig, version: number, workload: WorkloadPolicy | undefined): void {
    this.traceTo(cfg.tracing);
    this.version = version;
    this.workload = workload;
    this.lastGood = text;
    this.running = cfg;
    this.metrics.version.set(version);
  }

  /** Spans go where the running version says (a new collector or sampling: a new export; none: stopped). */
  private traceTo(tracing: TracingConfig | undefined): void {
    if (JSON.stringify(tracing ?? null) === JSON.stringify(this.spans?.config ?? null)) return;
    void this.spans?.stop();
    this.spans = tracing ? new SpanExport(tracing, this.opts.sidecarId ?? 'sockmesh-sidecar', this.spanMetrics) : undefined;
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
    this.identity?.stop();
    await this.haproxy.stop(this.opts.stopGraceMs ?? 10_000);
    await this.spans?.stop();
    this.metricsServer?.close();
  }
}

/** HAProxy's workers (uid) connect to the mTLS socket in the run directory: every directory above it must let them pass. */
function reachableBy(dir: string, uid: number): void {
  for (let d = resolve(dir); ; d = dirname(d)) {
    const st = statSync(d);
    if (st.uid !== uid && !(st.mode & 0o001)) {
      throw new SockmeshError(Codes.CONFIG_INVALID, `--run-dir ${dir}: HAProxy's workers (uid ${uid}) cannot reach the mTLS socket in it: ${d} is mode ${(st.mode & 0o777).toString(8)} (chmod o+x it, or use a run directory under /run/sockmesh)`);
    }
    if (d === dirname(d)) return;
  }
}
