// One meshed node for end-to-end tests (the shared fixture): a NodeTopology of pods (namespaces and
// cgroups this test makes), a stand-in sidecar in each pod (answers with the SO_ORIGINAL_DST it
// read), the agent's config file, and the agent itself started as `sockmesh agent` does. close()
// stops what it started (by pid), runs `down`, and removes everything, also after a failure.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { NodeTopology } from '../../src/topology/node.js';
import { Proc, type Line } from '../../src/topology/proc.js';
import { runCli } from './cli.js';
import { PEER } from './mesh.js';
import { askFromPod } from './pods.js';
import { slow } from './slow.js';

interface Family { name: string; metrics: Array<{ labels?: Record<string, string>; value?: string }> }

export class MeshedNode {
  readonly dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  readonly cfgPath = join(this.dir, 'mesh.yaml');
  agent: Proc | undefined;
  port = 0;
  private readonly agents: Proc[] = [];

  private constructor(readonly instance: string, readonly node: NodeTopology) {}

  /** Pods by name, or [name, address] for a pod on the node's bridge; a stand-in sidecar in each
   * (or in the pods `sidecars` names). */
  static async create(instance: string, pods: Array<string | [string, string]>, opts: { sidecars?: string[] } = {}): Promise<MeshedNode> {
    const t = new MeshedNode(instance, await NodeTopology.create(instance, pods));
    try {
      const names = pods.map((p) => (typeof p === 'string' ? p : p[0]));
      await Promise.all((opts.sidecars ?? names).map((p) => t.sidecar(p)));
    } catch (e) {
      await t.close();
      throw e;
    }
    return t;
  }

  /** Starts a stand-in sidecar on 127.0.0.1:15001 of `pod`, answering with what SO_ORIGINAL_DST said. */
  async sidecar(pod: string): Promise<Proc> {
    const p = this.node.spawnNode(pod, PEER, ['serve', '--host', '127.0.0.1', '--port', '15001', '--name', `sidecar-${pod}`, '--mode', 'origdst'], `sidecar ${pod}`);
    await p.waitFor((l) => l.event === 'ready', slow(30_000));
    return p;
  }

  netns(pod: string): string {
    return this.node.pod(pod).netns;
  }

  /** Saves the config as editors do: a new file renamed onto the path. */
  save(text: string): void {
    const tmp = join(this.dir, `.mesh.yaml.${process.hrtime.bigint()}.swp`);
    writeFileSync(tmp, text);
    renameSync(tmp, this.cfgPath);
  }

  /** `sockmesh agent` on the config (argv before the node binary: e.g. nsenter to run it elsewhere). */
  spawnAgent(extra: string[] = [], prefix: string[] = []): Proc {
    const argv = [process.execPath, 'bin/sockmesh.js', 'agent', '--config', this.cfgPath, '--cgroup', this.node.parent,
      '--instance', this.instance, '--listen', '127.0.0.1:0', ...extra];
    const p = prefix.length ? new Proc('agent', prefix[0], [...prefix.slice(1), ...argv]) : new Proc('agent', argv[0], argv.slice(1));
    this.agents.push(p);
    return p;
  }

  async startAgent(extra: string[] = [], prefix: string[] = []): Promise<Proc> {
    const p = this.spawnAgent(extra, prefix);
    const ready = await p.waitFor((l) => l.msg === 'agent ready', slow(30_000));
    this.port = Number(String(ready.listen).split(':')[1]);
    this.agent = p;
    return p;
  }

  async stopAgent(): Promise<void> {
    await this.agent?.kill(10_000);
    this.agent = undefined;
  }

  /** The next agent log line matching, after the ones seen so far. */
  nextLog(pred: (l: Line) => boolean, ms = 15_000): Promise<Line> {
    return this.agent!.waitForFrom(this.agent!.lines.length, pred, slow(ms));
  }

  ask(pod: string, host: string, port = 9080): Promise<Record<string, unknown>> {
    return askFromPod(this.node, pod, host, port);
  }

  async metric(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
    const text = await (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
    const f = (parsePrometheusTextFormat(text) as Family[]).find((x) => x.name === name);
    const m = f?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
    return m ? Number(m.value) : undefined;
  }

  async close(): Promise<void> {
    for (const a of this.agents) await a.kill(10_000);
    await runCli(['down', '--instance', this.instance]);
    await this.node.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
