// The agent under `--kubernetes` for end-to-end tests against the stand-in API server: started on a
// NodeTopology's pods (its kubeconfig in the test's directory), and everything torn down after.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { FakeApiServer } from '../../src/bench/apiserver.js';
import type { NodeTopology } from '../../src/topology/node.js';
import { Proc } from '../../src/topology/proc.js';
import { runCli } from './cli.js';
import { CLI } from './mesh.js';
import { slow } from './slow.js';

/** `sockmesh agent --kubernetes` for node-1 (env: variables before it, e.g. a forced probe failure), once ready. */
export async function startKubeAgent(o: { dir: string; node: NodeTopology; instance: string; env?: string[] }): Promise<Proc> {
  const agent = new Proc('agent', 'env', [...(o.env ?? []), process.execPath, CLI, 'agent', '--kubernetes', '--node', 'node-1', '--kubeconfig', join(o.dir, 'kubeconfig'),
    '--cgroup', o.node.parent, '--instance', o.instance, '--listen', '127.0.0.1:0']);
  await agent.waitFor((l) => l.msg === 'agent ready', slow(60_000));
  return agent;
}

/** Stops the agent, removes the instance, the node's namespaces and cgroups, the API server and the directory. */
export async function closeKubeNode(o: { agent?: Proc; instance: string; node?: NodeTopology; api: FakeApiServer; dir: string }): Promise<void> {
  await o.agent?.kill(10_000);
  await runCli(['down', '--instance', o.instance]);
  await o.node?.close();
  await o.api.close();
  rmSync(o.dir, { recursive: true, force: true });
}
