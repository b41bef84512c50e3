// A meshed topology for end-to-end tests: namespace + cgroup, servers outside the cgroup,
// sockmesh's sidecar inside it as uid 1337, and helpers to run clients in the cgroup.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Line, Proc } from '../../src/topology/proc.js';
import { Topology } from '../../src/topology/topology.js';
import { runCli } from './cli.js';
import { slow } from './slow.js';

export const PEER = 'dist/src/topology/peer.js';
export const CLI = 'bin/sockmesh.js';

export interface ServerSpec {
  name: string;
  host: string;
  port: number;
  mode?: 'whoami' | 'echo' | 'origdst';
  local?: boolean;
  /** A local server in the mesh cgroup (a stand-in sidecar listener). */
  inMesh?: boolean;
}

export class Mesh {
  sidecar!: Proc;
  readonly dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));

  private constructor(readonly topo: Topology) {}

  /**
   * Servers with `local: true` run in the pod namespace (outside the mesh cgroup); the others in
   * the remote namespace that carries `remoteAddresses`, reached over the pod's eth0.
   */
  static async create(name: string, remoteAddresses: string[], servers: ServerSpec[], opts: { sidecar?: boolean; ipv6?: boolean; podAddresses?: string[] } = {}): Promise<Mesh> {
    const mesh = new Mesh(await Topology.create(name, { remote: { addresses: remoteAddresses }, ipv6: opts.ipv6, podAddresses: opts.podAddresses }));
    try {
      const started = servers.map((s) => mesh.topo.spawnNode(PEER,
        ['serve', '--host', s.host, '--port', String(s.port), '--name', s.name, '--mode', s.mode ?? 'whoami'],
        { cgroup: s.inMesh ? 'mesh' : 'outside', netns: s.local || s.inMesh ? 'pod' : 'remote', label: `server ${s.name}` }));
      if (opts.sidecar !== false) {
        mesh.sidecar = mesh.topo.spawnNode(CLI, ['sidecar', '--uid', '1337', '--log-connections'], { cgroup: 'mesh', label: 'sidecar' });
        started.push(mesh.sidecar);
      }
      await Promise.all(started.map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
    } catch (err) {
      await mesh.close();
      throw err;
    }
    return mesh;
  }

  get cgroup(): string {
    return this.topo.cgroup;
  }

  get netns(): string {
    return this.topo.netns;
  }

  /** Runs a bash one-liner in the mesh cgroup and pod namespace as uid:gid; returns stdout. */
  runAs(uid: number, gid: number, script: string): string {
    return execFileSync('sh', ['-c',
      `echo $$ > ${this.cgroup}/cgroup.procs && exec ip netns exec ${this.netns} setpriv --reuid ${uid} --regid ${gid} --clear-groups bash -c "$0"`, script],
    { encoding: 'utf8', timeout: slow(10_000) });
  }

  /**
   * The governance sidecar on a config written to mesh.yaml (extra: its further options), and this
   * pod captured to it (`up` in the given mode) under `instance`; `down` it in afterAll.
   */
  async governed(instance: string, yaml: string, mode: 'ebpf' | 'iptables' = 'ebpf', extra: string[] = []): Promise<{ sidecar: Proc; cfgPath: string }> {
    const cfgPath = join(this.dir, 'mesh.yaml');
    writeFileSync(cfgPath, yaml);
    const sidecar = this.topo.spawnNode(CLI, ['sidecar', '--config', cfgPath, '--run-dir', join(this.dir, 'run'), ...extra], { cgroup: 'mesh', label: 'governance sidecar' });
    await sidecar.waitFor((l) => l.event === 'ready', slow(30_000));
    const where = mode === 'ebpf' ? ['--cgroup', this.cgroup, '--netns', this.netns] : ['--netns', this.netns];
    const r = await runCli(['up', '--mode', mode, ...where, '--config', cfgPath, '--instance', instance]);
    if (r.stderr) throw new Error(`sockmesh up: ${r.stderr}`);
    return { sidecar, cfgPath };
  }

  writeConfig(yaml: string): string {
    const path = join(this.dir, `config-${Date.now()}.yaml`);
    writeFileSync(path, yaml);
    return path;
  }

  /** Connection events the sidecar has logged so far. */
  sidecarConnections(): Line[] {
    return this.sidecar.lines.filter((l) => l.event === 'connection');
  }

  /** A client in the mesh cgroup holding one connection; `ask` sends a line and awaits the reply. */
  async client(host: string, port: number): Promise<Client> {
    const proc = this.topo.spawnNode(PEER, ['ask', '--host', host, '--port', String(port)], { cgroup: 'mesh', label: `client ${host}:${port}` });
    const connected = await proc.waitFor((l) => l.event === 'connected' || l.event === 'error', slow(10_000));
    if (connected.event === 'error') throw new Error(`client could not connect to ${host}:${port}: ${String(connected.message)}`);
    return new Client(proc, connected.local as string, connected.remote as string);
  }

  /** One request on a fresh connection; returns where it went. */
  async request(host: string, port: number, text = 'ping'): Promise<{ client: Client; reply: Reply }> {
    const client = await this.client(host, port);
    const reply = await client.ask(text);
    client.close();
    return { client, reply };
  }

  async close(): Promise<void> {
    await this.topo.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Reply {
  server: string;
  local: string;
  peer: string;
  line: string;
}

export class Client {
  private asked = 0;

  constructor(readonly proc: Proc, readonly local: string, readonly remote: string) {}

  async ask(text: string): Promise<Reply> {
    this.asked += 1;
    const n = this.asked;
    this.proc.send(text);
    const replies = () => this.proc.lines.filter((l) => l.event === 'reply');
    await this.proc.waitFor(() => replies().length >= n, slow(10_000));
    return replies()[n - 1].reply as Reply;
  }

  close(): void {
    this.proc.child.stdin!.end();
  }
}
