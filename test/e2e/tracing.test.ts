// Exported traces (issue 25): with `tracing:` the sidecar sends one span per request over OTLP/HTTP
// to a collector — here a test receiver that decodes them with the OpenTelemetry proto definitions.
// A request from the pod's app to a service whose endpoint is the pod itself crosses the sidecar
// twice: the client span (outbound) and the server span (inbound) share the trace id, and the
// server span is the client span's child; the app sees the server span as its parent. With the
// receiver down, requests keep succeeding and the drop counter rises.
import { execFileSync } from 'node:child_process';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Line, Proc } from '../../src/topology/proc.js';
import { POD_IP, REMOTE_IP } from '../../src/topology/topology.js';
import { runCli } from '../helpers/cli.js';
import { Mesh, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const RECEIVER = 'test/helpers/otlp-receiver.mjs';
const VIP = '10.96.0.40';

privileged('exported traces (OTLP/HTTP, OpenTelemetry SDK)', () => {
  const instance = uniqueName('tr');
  let mesh: Mesh;
  let receiver: Proc;

  beforeAll(async () => {
    mesh = await Mesh.create(instance, [], [], { sidecar: false });
    receiver = mesh.topo.spawnNode(RECEIVER, ['--host', REMOTE_IP, '--port', '4318'], { netns: 'remote', cgroup: 'outside', label: 'otlp receiver' });
    const app = mesh.topo.spawnNode(PEER, ['http-serve', '--host', '0.0.0.0', '--port', '9090', '--name', 'app'], { cgroup: 'mesh', label: 'app' });
    await Promise.all([receiver, app].map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
    await mesh.governed(instance, `services:
  - { name: front, addresses: [${VIP}], ports: [9090], protocol: http, endpoints: ['${POD_IP}:9090'] }
capture: { includeInboundPorts: [9090] }
tracing: { collector: 'http://${REMOTE_IP}:4318/v1/traces', randomSamplingPercentage: 100, maxQueueSize: 64 }
`, 'ebpf', ['--metrics-listen', '127.0.0.1:15020', '--id', 'frontend']);
  });

  afterAll(async () => {
    await runCli(['down', '--instance', instance]);
    await mesh?.close();
  });

  async function curl(n: number, headers: string[] = []): Promise<Line[]> {
    const p = mesh.topo.spawn('curl', ['-s', '-m', '10', ...headers.flatMap((h) => ['-H', h]), '-w', '\\n{"code":%{http_code}}\\n', `http://${VIP}:9090/t[1-${n}]`], { cgroup: 'mesh', label: 'curl' });
    expect(await p.exited).toBe(0);
    return p.lines;
  }

  const dropped = (reason: string) => {
    const text = execFileSync('ip', ['netns', 'exec', mesh.netns, 'curl', '-s', 'http://127.0.0.1:15020/metrics'], { encoding: 'utf8' });
    const fam = parsePrometheusTextFormat(text).find((f) => f.name === 'sockmesh_sidecar_spans_dropped_total');
    return (fam?.metrics ?? []).filter((m) => (m as { labels?: Record<string, string> }).labels?.reason === reason).reduce((s, m) => s + Number((m as { value: string }).value), 0);
  };

  it('a client span and a server span per request: one trace id, the server span the client span\'s child', async () => {
    const lines = await curl(20);
    expect(lines.filter((l) => l.code === 200)).toHaveLength(20);
    const seen = lines.filter((l) => l.server === 'app').map((l) => String(l.traceparent));
    expect(seen).toHaveLength(20);
    const spans = () => receiver.lines.filter((l) => l.event === 'span');
    await receiver.waitFor(() => spans().length >= 40, slow(15_000));
    for (const tp of seen) {
      const [, traceId, parentOfApp] = tp.split('-');
      const mine = spans().filter((s) => s.traceId === traceId);
      const client = mine.find((s) => s.kind === 3); // SPAN_KIND_CLIENT
      const server = mine.find((s) => s.kind === 2); // SPAN_KIND_SERVER
      expect(client, `client span of ${traceId}`).toBeDefined();
      expect(server, `server span of ${traceId}`).toBeDefined();
      expect(server!.parentSpanId).toBe(client!.spanId);
      expect(client!.parentSpanId).toBe(''); // curl sent no traceparent: the trace starts at the client's sidecar
      expect(parentOfApp).toBe(server!.spanId);
      expect(client).toMatchObject({ name: 'GET front', service: 'frontend', attributes: { 'http.response.status_code': 200, 'sockmesh.service': 'front', 'http.request.method': 'GET' } });
      expect(BigInt(String(server!.start))).toBeGreaterThanOrEqual(BigInt(String(client!.start)));
      expect(BigInt(String(server!.end))).toBeLessThanOrEqual(BigInt(String(client!.end)));
    }
  });

  it('an app\'s own trace context: its span is the client span\'s parent; a trace it did not sample is not exported', async () => {
    const spans = () => receiver.lines.filter((l) => l.event === 'span');
    const sampled = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const unsampled = '00-5bf92f3577b34da6a3ce929d0e0e4737-10f067aa0ba902b8-00';
    const a = await curl(1, [`traceparent: ${sampled}`]);
    const b = await curl(1, [`traceparent: ${unsampled}`]);
    await receiver.waitFor(() => spans().filter((s) => s.traceId === '4bf92f3577b34da6a3ce929d0e0e4736').length >= 2, slow(15_000));
    const client = spans().find((s) => s.traceId === '4bf92f3577b34da6a3ce929d0e0e4736' && s.kind === 3);
    expect(client?.parentSpanId).toBe('00f067aa0ba902b7');
    expect(String(a.find((l) => l.server === 'app')?.traceparent)).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    // Not sampled: the flag is passed on as it came, and nothing is exported for that trace.
    expect(String(b.find((l) => l.server === 'app')?.traceparent)).toMatch(/^00-5bf92f3577b34da6a3ce929d0e0e4737-[0-9a-f]{16}-00$/);
    await curl(5); // later spans arrive; the unsampled trace's never does
    await receiver.waitFor(() => spans().length >= 52, slow(15_000));
    expect(spans().some((s) => s.traceId === '5bf92f3577b34da6a3ce929d0e0e4737')).toBe(false);
  });

  it('with the receiver down, requests keep succeeding and the queue-full drop counter rises', async () => {
    const before = dropped('queue_full');
    receiver.child.kill('SIGTERM');
    await receiver.exited;
    const lines = await curl(300);
    expect(lines.filter((l) => l.code === 200)).toHaveLength(300);
    let now = before;
    for (let i = 0; i < 60 && now <= before; i++) {
      await new Promise((r) => setTimeout(r, 250));
      now = dropped('queue_full');
    }
    expect(now).toBeGreaterThan(before);
  });
});
