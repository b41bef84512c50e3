// Malformed input at every boundary (the lifecycle issue): config files given to `up`, command-line
// arguments, requests on the agent's unix socket and bad edits of the agent's watched file. Each one
// is refused with a message naming the problem (exit code != 0, an error answer, or a logged
// rejection), and the kernel state stays byte for byte what it was: every config-driven map of the
// two eBPF instances, what is attached to their cgroups, and an iptables instance's rules.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroup2Mount } from '../../src/bpf/cgroup.js';
import { NodeTopology } from '../../src/topology/node.js';
import { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';
import { attached, mapDump, natRules } from '../helpers/state.js';

type Case =
  | { kind: 'config'; what: string; text: string; message: RegExp }
  | { kind: 'cli'; what: string; args: (ctx: Ctx) => string[]; message: RegExp }
  | { kind: 'socket'; what: string; line: string; message: RegExp }
  | { kind: 'edit'; what: string; text: string; message: RegExp };

interface Ctx {
  a: string;
  parentA: string;
  c: string;
  cfg: string;
  dir: string;
}

const svc = (body: string) => `services:\n  - ${body}\n`;
const GOOD_A = svc('{ name: reviews, addresses: [10.96.0.20], ports: [9080] }');

const CASES: Case[] = [
  // Config files given to `up` (the instance is live: each would have replaced its state).
  { kind: 'config', what: 'an empty file', text: '', message: /the config is empty; to mesh no services, write `services: \[\]`/ },
  { kind: 'config', what: 'only comments', text: '# nothing\n# here\n', message: /the config is empty/ },
  { kind: 'config', what: 'a YAML syntax error', text: 'services: [\n', message: /not valid YAML/ },
  { kind: 'config', what: 'a duplicate key', text: 'services: []\nservices: []\n', message: /not valid YAML: duplicated mapping key/ },
  { kind: 'config', what: 'a top-level list', text: '- a\n- b\n', message: /must be a mapping/ },
  { kind: 'config', what: 'a top-level number', text: '42\n', message: /must be a mapping/ },
  { kind: 'config', what: 'binary garbage', text: '\u0000\u0001\u0002\u00ff\u00fe', message: /not valid YAML|must be a mapping/ },
  { kind: 'config', what: 'an unknown top-level key', text: 'services: []\nservice: []\n', message: /service: unknown key \(allowed: sidecar, services,/ },
  { kind: 'config', what: 'services missing', text: 'sidecar: { uid: 1337 }\n', message: /services: is required/ },
  { kind: 'config', what: 'services not a list', text: 'services: { a: 1 }\n', message: /services: must be a list/ },
  { kind: 'config', what: 'a service without a name', text: svc('{ ports: [80] }'), message: /services\[0\]\.name: must be a lower-case DNS name/ },
  { kind: 'config', what: 'an upper-case name', text: svc('{ name: Reviews, ports: [80] }'), message: /services\[0\]\.name: must be a lower-case DNS name/ },
  { kind: 'config', what: 'a 254-character name', text: svc(`{ name: ${'a'.repeat(254)}, ports: [80] }`), message: /services\[0\]\.name: must be a lower-case DNS name \(a-z, 0-9, '-', '\.', at most 253\)/ },
  { kind: 'config', what: 'an address that is no IP', text: svc('{ name: a, addresses: [10.0.0.300], ports: [80] }'), message: /services\[0\]\.addresses\[0\]: must be an IPv4 or IPv6 address/ },
  { kind: 'config', what: 'a hostname as address', text: svc('{ name: a, addresses: [reviews.default], ports: [80] }'), message: /services\[0\]\.addresses\[0\]: must be an IPv4 or IPv6 address/ },
  { kind: 'config', what: 'port 0', text: svc('{ name: a, ports: [0] }'), message: /services\[0\]\.ports\[0\]: must be between 1 and 65535/ },
  { kind: 'config', what: 'port 70000', text: svc('{ name: a, ports: [70000] }'), message: /services\[0\]\.ports\[0\]: must be between 1 and 65535, got 70000/ },
  { kind: 'config', what: 'a port as text', text: svc('{ name: a, ports: ["http"] }'), message: /services\[0\]\.ports\[0\]/ },
  { kind: 'config', what: 'a fractional port', text: svc('{ name: a, ports: [80.5] }'), message: /services\[0\]\.ports\[0\]/ },
  { kind: 'config', what: 'a port listed twice', text: svc('{ name: a, ports: [80, 80] }'), message: /services\[0\]\.ports: port 80 is listed twice/ },
  { kind: 'config', what: 'no ports', text: svc('{ name: a, ports: [] }'), message: /services\[0\]\.ports: must list at least one port/ },
  { kind: 'config', what: 'ports missing', text: svc('{ name: a }'), message: /services\[0\]\.ports: is required/ },
  { kind: 'config', what: 'two services with one name', text: `${svc('{ name: a, ports: [80] }')}  - { name: a, ports: [81] }\n`, message: /services\[1\]\.name: duplicate service name "a"/ },
  { kind: 'config', what: 'one address:port claimed twice', text: `${svc('{ name: a, addresses: [10.0.0.1], ports: [80] }')}  - { name: b, addresses: [10.0.0.1], ports: [80] }\n`, message: /10\.0\.0\.1:80 is already claimed by service "a"/ },
  { kind: 'config', what: 'redirect as text', text: svc('{ name: a, ports: [80], redirect: "yes" }'), message: /services\[0\]\.redirect: must be true or false/ },
  { kind: 'config', what: 'an unknown splice mode', text: svc('{ name: a, ports: [80], splice: sometimes }'), message: /services\[0\]\.splice: must be one of auto, always, never/ },
  { kind: 'config', what: 'an unknown service field', text: svc('{ name: a, ports: [80], weight: 3 }'), message: /services\[0\]\.weight: unknown key/ },
  { kind: 'config', what: 'a negative sidecar uid', text: `sidecar: { uid: -1 }\n${svc('{ name: a, ports: [80] }')}`, message: /sidecar\.uid/ },
  { kind: 'config', what: 'the removed autoSplice block', text: `autoSplice: { votes: 2 }\n${svc('{ name: a, ports: [80] }')}`, message: /autoSplice: was removed/ },
  { kind: 'config', what: 'a splice queue below 64 KiB', text: `spliceQueueBytes: 1000\n${svc('{ name: a, ports: [80] }')}`, message: /spliceQueueBytes/ },
  { kind: 'config', what: 'an excluded CIDR that is no CIDR', text: `exclude: { outboundCIDRs: [10.0.0.0/33] }\n${svc('{ name: a, ports: [80] }')}`, message: /exclude\.outboundCIDRs\[0\]/ },
  { kind: 'config', what: 'an unknown capture.outbound', text: `capture: { outbound: everything }\n${svc('{ name: a, ports: [80] }')}`, message: /capture\.outbound/ },
  { kind: 'config', what: 'pods not a list', text: 'services: []\npods: { a: 1 }\n', message: /pods: must be a list/ },
  { kind: 'config', what: 'a pod without a cgroup', text: 'services: []\npods:\n  - { name: p }\n', message: /pods\[0\]\.cgroup/ },
  { kind: 'config', what: 'a pod whose cgroup does not exist', text: 'services: []\npods:\n  - { name: p, cgroup: nowhere, netns: sm-no-such-netns }\n', message: /cannot find every pod/ },
  { kind: 'config', what: 'a pod without a network namespace', text: 'services: []\npods:\n  - { name: p, cgroup: a }\n', message: /pods\[0\]\.netns: is required/ },
  { kind: 'config', what: 'two pods with one name', text: 'services: []\npods:\n  - { name: p, cgroup: a }\n  - { name: p, cgroup: b }\n', message: /pods\[1\]\.name/ },
  { kind: 'config', what: 'more services than the kernel map holds', text: `services:\n${Array.from({ length: 16385 }, (_, i) => `  - { name: s${i}, addresses: [10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}], ports: [80] }`).join('\n')}\n`, message: /services: 16385 services, the kernel map sm_svc_state holds 16384/ },
  // Command-line arguments.
  { kind: 'cli', what: 'up on the cgroup2 root', args: (x) => ['up', '--cgroup', cgroup2Mount()!, '--instance', x.a, '--config', x.cfg], message: /cgroup2 root/ },
  { kind: 'cli', what: 'up on a directory that is no cgroup', args: (x) => ['up', '--cgroup', x.dir, '--instance', x.a, '--config', x.cfg], message: /not a cgroup2 directory|is not a cgroup/ },
  { kind: 'cli', what: 'an instance name with a slash', args: (x) => ['up', '--cgroup', x.parentA, '--instance', '../etc', '--config', x.cfg], message: /instance name/ },
  { kind: 'cli', what: 'an empty instance name', args: (x) => ['up', '--cgroup', x.parentA, '--instance', '', '--config', x.cfg], message: /instance name/ },
  { kind: 'cli', what: 'an unknown mode', args: (x) => ['up', '--cgroup', x.parentA, '--instance', x.a, '--mode', 'nft', '--config', x.cfg], message: /Allowed choices are ebpf, iptables|invalid/ },
  { kind: 'cli', what: 'an empty --netns', args: (x) => ['up', '--cgroup', x.parentA, '--instance', x.a, '--netns', '', '--config', x.cfg], message: /--netns is empty/ },
  { kind: 'cli', what: 'a config path that does not exist', args: (x) => ['up', '--cgroup', x.parentA, '--instance', x.a, '--config', join(x.dir, 'missing.yaml')], message: /cannot read config/ },
  { kind: 'cli', what: 'a directory as config', args: (x) => ['up', '--cgroup', x.parentA, '--instance', x.a, '--config', x.dir], message: /is not a regular file/ },
  { kind: 'cli', what: 'a device as config', args: (x) => ['up', '--cgroup', x.parentA, '--instance', x.a, '--config', '/dev/zero'], message: /is not a regular file/ },
  { kind: 'cli', what: 'an unknown option', args: (x) => ['up', '--cgroup', x.parentA, '--instance', x.a, '--force'], message: /unknown option '--force'/ },
  { kind: 'cli', what: 'switching an unknown service', args: (x) => ['service', 'disable', 'nosuch', '--instance', x.c], message: /no service "nosuch"/ },
  { kind: 'cli', what: 'a service name that is no DNS label', args: (x) => ['service', 'disable', 'Bad_Name', '--instance', x.c], message: /service name|DNS name/ },
  { kind: 'cli', what: 'a second agent for a running instance', args: (x) => ['agent', '--config', x.cfg, '--cgroup', x.parentA, '--instance', x.c, '--listen', '127.0.0.1:0'], message: /held by another sockmesh agent/ },
  { kind: 'cli', what: 'an agent with neither --config nor --kubernetes', args: (x) => ['agent', '--cgroup', x.parentA, '--instance', x.a], message: /needs --config FILE, or --kubernetes/ },
  { kind: 'cli', what: '--node without --kubernetes', args: (x) => ['agent', '--config', x.cfg, '--cgroup', x.parentA, '--instance', x.a, '--node', 'n1'], message: /--node goes with --kubernetes/ },
  { kind: 'cli', what: '--kubernetes without a node name', args: (x) => ['agent', '--kubernetes', '--cgroup', x.parentA, '--instance', x.a], message: /needs the node name: --node NAME, or NODE_NAME/ },
  { kind: 'cli', what: '--kubernetes with a kubeconfig that does not exist', args: (x) => ['agent', '--kubernetes', '--node', 'n1', '--kubeconfig', join(x.dir, 'nope'), '--cgroup', x.parentA, '--instance', x.a], message: /cannot load the Kubernetes credentials from/ },
  { kind: 'cli', what: '--kubernetes with a node-settings file that lists services', args: (x) => ['agent', '--kubernetes', '--node', 'n1', '--kubeconfig', join(x.dir, 'nope'), '--config', x.cfg, '--cgroup', x.parentA, '--instance', x.a], message: /with --kubernetes the cluster lists the services and pods/ },
  { kind: 'cli', what: 'explain without a port', args: (x) => ['explain', '--instance', x.c, '10.96.0.20'], message: /destination must be IPV4:PORT/ },
  { kind: 'cli', what: 'down of a malformed instance name', args: () => ['down', '--instance', 'a/b'], message: /instance name/ },
  // The agent's control socket.
  { kind: 'socket', what: 'a line that is not JSON', line: 'hello', message: /request is not JSON/ },
  { kind: 'socket', what: 'a JSON array', line: '[1,2]', message: /request must be a JSON object/ },
  { kind: 'socket', what: 'no op', line: '{"name":"reviews"}', message: /unknown op undefined/ },
  { kind: 'socket', what: 'an unknown op', line: '{"op":"shutdown"}', message: /unknown op "shutdown"/ },
  { kind: 'socket', what: 'redirect as text', line: '{"op":"service","name":"reviews","redirect":"no"}', message: /redirect must be true or false/ },
  { kind: 'socket', what: 'a name that is no DNS label', line: '{"op":"service","name":"../x","redirect":false}', message: /name must be a service name/ },
  { kind: 'socket', what: 'an unknown field', line: '{"op":"status","verbose":true}', message: /unknown field "verbose"/ },
  { kind: 'socket', what: 'a service the config does not list', line: '{"op":"service","name":"nosuch","redirect":false}', message: /no service "nosuch"/ },
  { kind: 'socket', what: 'a request line over 64 KiB', line: `{"op":"status","x":"${'a'.repeat(70_000)}"}`, message: /request|too long|64/ },
  // Bad edits of the agent's watched file.
  { kind: 'edit', what: 'an edit with a YAML error', text: 'services: [\n', message: /not valid YAML/ },
  { kind: 'edit', what: 'an edit with a bad port', text: svc('{ name: reviews, addresses: [10.96.0.20], ports: [0] }'), message: /services\[0\]\.ports\[0\]/ },
  { kind: 'edit', what: 'an emptied file', text: '', message: /the config is empty/ },
];

privileged('malformed input at every boundary', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  const a = uniqueName('ma');
  const c = uniqueName('mc');
  const b = uniqueName('mb');
  let nodeA: NodeTopology;
  let nodeC: NodeTopology;
  let agent: Proc | undefined;
  const cfgA = join(dir, 'a.yaml');
  const cfgC = join(dir, 'c.yaml');
  const goodC = () => `${GOOD_A}pods:\n  - { name: pod-c, cgroup: c, netns: ${nodeC.pod('c').netns} }\n`;
  const ctx = (): Ctx => ({ a, parentA: nodeA.parent, c, cfg: cfgA, dir });

  /** The kernel state every case must leave as it was. */
  const state = () => JSON.stringify({
    a: mapDump(a), c: mapDump(c), attachedA: attached(nodeA.parent), attachedC: attached(nodeC.parent), rulesB: natRules(nodeA.pod('b').netns),
  });

  function ask(line: string): Promise<{ ok: boolean; error?: { message: string } }> {
    return new Promise((resolve, reject) => {
      const s = connect(`/run/sockmesh/${c}.sock`);
      let buf = '';
      s.setEncoding('utf8');
      s.on('connect', () => s.write(`${line}\n`));
      s.on('data', (d: string) => { buf += d; });
      s.on('error', reject);
      s.on('close', () => {
        try {
          resolve(JSON.parse(buf));
        } catch {
          reject(new Error(`not JSON: ${buf.slice(0, 200)}`));
        }
      });
    });
  }

  beforeAll(async () => {
    nodeA = await NodeTopology.create(a, ['a', 'b']);
    nodeC = await NodeTopology.create(c, ['c']);
    writeFileSync(cfgA, `${GOOD_A}pods:\n  - { name: pod-a, cgroup: a, netns: ${nodeA.pod('a').netns} }\n`);
    expect((await runCli(['up', '--cgroup', nodeA.parent, '--instance', a, '--config', cfgA])).code).toBe(0);
    const single = join(dir, 'b.yaml');
    writeFileSync(single, GOOD_A);
    expect((await runCli(['up', '--mode', 'iptables', '--netns', nodeA.pod('b').netns, '--instance', b, '--config', single])).code).toBe(0);
    writeFileSync(cfgC, goodC());
    agent = new Proc('agent', process.execPath, ['bin/sockmesh.js', 'agent', '--config', cfgC, '--cgroup', nodeC.parent, '--instance', c, '--listen', '127.0.0.1:0']);
    await agent.waitFor((l) => l.msg === 'agent ready', slow(30_000));
  });

  afterAll(async () => {
    await agent?.kill();
    for (const n of [a, b, c]) await runCli(['down', '--instance', n]);
    await nodeA?.close();
    await nodeC?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`lists at least 50 malformed inputs (${CASES.length})`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(50);
  });

  describe.each(CASES)('$kind: $what', (tc) => {
    it('is refused with its message and leaves the kernel state as it was', async () => {
      const before = state();
      let message: string;
      if (tc.kind === 'config') {
        const f = join(dir, 'bad.yaml');
        writeFileSync(f, tc.text);
        const r = await runCli(['up', '--cgroup', nodeA.parent, '--instance', a, '--config', f]);
        expect(r.code).not.toBe(0);
        message = r.stderr;
      } else if (tc.kind === 'cli') {
        const r = await runCli(tc.args(ctx()));
        expect(r.code).not.toBe(0);
        message = r.stderr;
      } else if (tc.kind === 'socket') {
        const resp = await ask(tc.line);
        expect(resp.ok).toBe(false);
        message = resp.error!.message;
      } else {
        const seen = agent!.lines.length;
        const tmp = join(dir, '.c.yaml.tmp');
        writeFileSync(tmp, tc.text);
        renameSync(tmp, cfgC);
        const rejected = await agent!.waitForFrom(seen, (l) => l.msg === 'config rejected; the last good state stays applied', slow(10_000));
        message = JSON.stringify(rejected.issues);
        // Put the good file back (an apply with nothing to change: no slot flip).
        const back = agent!.lines.length;
        writeFileSync(tmp, goodC());
        renameSync(tmp, cfgC);
        await agent!.waitForFrom(back, (l) => l.msg === 'reconciled', slow(10_000));
      }
      expect(message).toMatch(tc.message);
      expect(state()).toBe(before);
    }, slow(60_000));
  });

  it('the instances still work after all of it', () => {
    expect(execFileSync('bpftool', ['cgroup', 'show', nodeA.parent], { encoding: 'utf8' })).toMatch(/sm_connect4/);
    expect(agent!.child.exitCode).toBeNull();
  });
});
