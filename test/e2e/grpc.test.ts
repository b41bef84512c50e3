// gRPC through the governance sidecar (issue 25): a service Istio would select as grpc is proxied
// as HTTP/2 (h2c between app and sidecar, and to the endpoints), so the unary calls of ONE client
// connection are balanced per call over both endpoints; a server-streaming call works end to end;
// the access log carries grpc-status where the response has it as a header (gRPC's Trailers-Only
// answers: every error without a message). Client and server are @grpc/grpc-js.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { POD_IP } from '../../src/topology/topology.js';
import { Mesh } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const GRPC = 'test/helpers/grpc-peer.mjs';
const EP = { g1: '10.0.0.21', g2: '10.0.0.22' };
const VIP = '10.96.0.50';

privileged('gRPC through the sidecar (HTTP/2, balanced per call)', () => {
  const instance = uniqueName('grpc');
  let mesh: Mesh;
  let sidecar: Proc;

  beforeAll(async () => {
    mesh = await Mesh.create(instance, Object.values(EP), [], { sidecar: false });
    const servers = Object.entries(EP).map(([name, addr]) => mesh.topo.spawnNode(GRPC, ['serve', '--host', addr, '--port', '50051', '--name', name], { netns: 'remote', cgroup: 'outside', label: `grpc ${name}` }));
    // The pod's own gRPC server, behind its sidecar's inbound side (captured: port 50053).
    servers.push(mesh.topo.spawnNode(GRPC, ['serve', '--host', '0.0.0.0', '--port', '50053', '--name', 'local'], { cgroup: 'mesh', label: 'grpc local' }));
    await Promise.all(servers.map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
    ({ sidecar } = await mesh.governed(instance, `services:
  - name: echo
    addresses: [${VIP}]
    ports: [50051]
    protocol: grpc
    endpoints: [${EP.g1}:50051, ${EP.g2}:50051]
  - { name: local, addresses: [10.96.0.51], ports: [50053], protocol: grpc, endpoints: ['${POD_IP}:50053'] }
capture: { includeInboundPorts: [50053] }
`));
  });

  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  it('1,000 unary calls on one client connection spread over both endpoints; streaming works; grpc-status in the access log', async () => {
    const before = sidecar.lines.length;
    const client = mesh.topo.spawnNode(GRPC, ['call', '--host', VIP, '--port', '50051', '--count', '1000'], { cgroup: 'mesh', label: 'grpc client' });
    const done = await client.waitFor((l) => l.event === 'done', slow(120_000));
    expect(done.errors).toBe(0);
    // One grpc-js channel is one HTTP/2 connection: per-connection balancing would give one endpoint all 1,000.
    const servers = done.servers as Record<string, number>;
    expect(servers.g1 + servers.g2).toBe(1000);
    expect(Math.min(servers.g1, servers.g2)).toBeGreaterThanOrEqual(400);
    expect(done.items).toEqual({ got: ['item-0', 'item-1', 'item-2', 'item-3', 'item-4'] });
    expect(done.missing).toBe(5); // NOT_FOUND came back through the sidecar
    await sidecar.waitFor(() => sidecar.lines.slice(before).filter((l) => l.event === 'access' && l.service === 'echo').length >= 1002, slow(10_000));
    const logged = sidecar.lines.slice(before).filter((l) => l.event === 'access' && l.service === 'echo');
    expect(logged.filter((l) => l.path === '/sockmesh.test.Echo/Unary')).toHaveLength(1000);
    expect(logged.find((l) => l.path === '/sockmesh.test.Echo/Missing')).toMatchObject({ status: 200, grpc_status: 5 });
    // OK answers carry grpc-status in trailers, which HAProxy 2.6 cannot read: logged as null (README).
    expect(logged.find((l) => l.path === '/sockmesh.test.Echo/Unary')).toMatchObject({ status: 200, grpc_status: null });
  });

  it('through both sides of a sidecar: outbound and inbound as HTTP/2 to the pod\'s own server', async () => {
    const before = sidecar.lines.length;
    const client = mesh.topo.spawnNode(GRPC, ['call', '--host', '10.96.0.51', '--port', '50053', '--count', '20'], { cgroup: 'mesh', label: 'grpc client local' });
    const done = await client.waitFor((l) => l.event === 'done', slow(60_000));
    expect(done).toMatchObject({ errors: 0, servers: { local: 20 }, items: { got: ['item-0', 'item-1', 'item-2', 'item-3', 'item-4'] }, missing: 5 });
    await sidecar.waitFor(() => sidecar.lines.slice(before).filter((l) => l.event === 'access' && l.service === 'local').length >= 44, slow(10_000));
    const logged = sidecar.lines.slice(before).filter((l) => l.event === 'access' && l.service === 'local');
    expect(logged.filter((l) => l.direction === 'outbound')).toHaveLength(22);
    expect(logged.filter((l) => l.direction === 'inbound')).toHaveLength(22);
    expect(logged.find((l) => l.direction === 'inbound' && l.path === '/sockmesh.test.Echo/Missing')).toMatchObject({ grpc_status: 5 });
  });
});
