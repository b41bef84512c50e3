// The agent's Prometheus metrics. Its own work (reconciles, rejections, the source) is counted as it
// happens, in prom-client. The kernel's counters (per pod, per service, per endpoint) are read from
// the per-CPU maps at scrape time and written out as exposition text directly: tens of thousands of
// label sets through prom-client's label hashing, and the counters summed as BigInts, made one
// scrape cost ~200 ms of CPU and stalled /healthz (`sockmesh bench --agent` measures it).
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';
import type { KernelView } from '../instance/capture.js';
import { STATS, SVC_STATS } from '../bpf/codecs.js';
import { endpointName } from '../config/constants.js';
import { endpointCounters, POD_COUNTERS, SERVICE_COUNTERS } from '../instance/counters.js';

// prom-client's index also loads its Pushgateway (https, url and their dependencies: ~3 MiB of a
// process the agent keeps small); the agent needs only these four, from the same package.
const require = createRequire(import.meta.url);
const Registry: typeof Prom.Registry = require('prom-client/lib/registry');
const Counter: typeof Prom.Counter = require('prom-client/lib/counter');
const Gauge: typeof Prom.Gauge = require('prom-client/lib/gauge');
const Histogram: typeof Prom.Histogram = require('prom-client/lib/histogram');
type Counter = Prom.Counter;
type Gauge = Prom.Gauge;
type Histogram = Prom.Histogram;

/** A label value as the exposition format writes it. */
function esc(v: string): string {
  return /[\\"\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}

function maxKey(m: Map<number, unknown>): number {
  let max = 0;
  for (const k of m.keys()) if (k > max) max = k;
  return max;
}

function header(name: string, type: 'counter' | 'gauge', help: string): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly reconcileSeconds: Histogram;
  readonly reconcileFailures: Counter;
  readonly rejections: Counter;
  readonly sourceStale: Gauge;
  readonly lastApplied: Gauge;
  readonly podProblems: Gauge;
  readonly predating: Gauge;
  readonly podCertificateExpiry: Gauge;
  readonly caRootExpiry: Gauge;
  readonly certificatesIssued: Counter;

  constructor(version: string, private readonly kernel: KernelView) {
    const registers = [this.registry];
    new Gauge({ name: 'sockmesh_build_info', help: 'sockmesh version and Node.js version', labelNames: ['version', 'node'], registers })
      .set({ version, node: process.versions.node }, 1);
    this.reconcileSeconds = new Histogram({
      name: 'sockmesh_reconcile_duration_seconds', help: 'Time to apply one desired state to the kernel maps', registers,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    });
    this.reconcileFailures = new Counter({ name: 'sockmesh_reconcile_failures_total', help: 'Applies that failed (the last good state stayed)', labelNames: ['reason'], registers });
    this.rejections = new Counter({ name: 'sockmesh_config_rejections_total', help: 'Config versions rejected by validation', registers });
    this.sourceStale = new Gauge({ name: 'sockmesh_config_source_stale', help: '1 while the config source is missing or invalid and the last good state is applied', registers });
    this.lastApplied = new Gauge({ name: 'sockmesh_config_last_applied_timestamp_seconds', help: 'When the last desired state reached the kernel', registers });
    this.podProblems = new Gauge({ name: 'sockmesh_pods_unresolved', help: 'Meshed pods (listed, or the cluster\'s on this node) whose cgroup or network namespace was not found, or that conflict with another pod', registers });
    this.predating = new Gauge({
      name: 'sockmesh_connections_predating_capture', labelNames: ['pod'], registers,
      help: 'TCP connections a pod had open when capture first started: never captured nor spliced; they go direct until they reconnect',
    });
    this.podCertificateExpiry = new Gauge({
      name: 'sockmesh_pod_certificate_expiry_timestamp_seconds', labelNames: ['pod'], registers,
      help: 'When each meshed pod\'s current certificate expires (Unix time; renewed at half of its life)',
    });
    this.caRootExpiry = new Gauge({ name: 'sockmesh_ca_root_expiry_timestamp_seconds', labelNames: ['root'], registers, help: 'When each root of the mesh CA\'s trust bundle expires (Unix time; root 0 is the first of the bundle)' });
    this.certificatesIssued = new Counter({ name: 'sockmesh_pod_certificates_issued_total', help: 'Pod certificates the agent issued (first ones and renewals)', registers });
  }

  /** What the agent reports of itself when scraped: whether it is ready (as /readyz), and how many of the node's governance sidecars refuse its newest policy version. */
  follow(view: { ready: () => boolean; sidecarsRefusing: () => number }): void {
    const registers = [this.registry];
    new Gauge({ name: 'sockmesh_agent_ready', help: '1 while the agent is ready (/readyz: a desired state applied and its source not stale), else 0', registers, collect() { this.set(view.ready() ? 1 : 0); } });
    new Gauge({ name: 'sockmesh_sidecars_refusing_policy', help: 'Governance sidecars of this node whose HAProxy refused the agent\'s newest policy version (they serve their last good one)', registers, collect() { this.set(view.sidecarsRefusing()); } });
  }

  /** The whole exposition: the agent's own metrics, then the kernel's read now. */
  async text(): Promise<string> {
    return `${await this.registry.metrics()}${this.kernelText()}`;
  }

  private kernelText(): string {
    const maps = this.kernel.maps();
    if (!maps) return '';
    const { pods, services } = this.kernel.names();
    const out: string[] = [];
    out.push(header('sockmesh_pod_events_total', 'counter', 'Kernel data-path events per pod (BPF per-CPU counters, summed)'));
    // The ids in use, and 0 (what belongs to no pod): a node uses a few of the 16,384 service ids.
    const podSums = maps.stats.sums(maxKey(pods) + 1);
    for (let id = 0, base = 0; base < podSums.length; id++, base += STATS.SM_STAT_MAX) {
      let pod: string | undefined;
      for (const c of POD_COUNTERS) {
        const v = podSums[base + c.index];
        if (!v) continue;
        pod ??= esc(pods.get(id) ?? (id === 0 ? '(none)' : `(id ${id})`));
        out.push(`sockmesh_pod_events_total{pod="${pod}",event="${c.name}"} ${v}\n`);
      }
    }
    out.push(header('sockmesh_service_connections_total', 'counter', 'Connections per service by outcome (captured, disabledSkips, spliced)'));
    const svcSums = maps.svcStats.sums(services.size ? maxKey(services) + 1 : 0);
    for (let id = 0, base = 0; base < svcSums.length; id++, base += SVC_STATS.SM_SVC_STAT_MAX) {
      let service: string | undefined;
      for (const c of SERVICE_COUNTERS) {
        const v = svcSums[base + c.index];
        if (!v) continue;
        const name = services.get(id);
        if (name === undefined) break;
        service ??= esc(name);
        out.push(`sockmesh_service_connections_total{service="${service}",outcome="${c.name}"} ${v}\n`);
      }
    }
    out.push(header('sockmesh_endpoint_connections_total', 'counter', 'Connections (UDP: sockets) kernel mode gave each endpoint of a service'));
    for (const e of endpointCounters(maps)) {
      const service = services.get(e.serviceId);
      if (service !== undefined && e.connections) out.push(`sockmesh_endpoint_connections_total{service="${esc(service)}",endpoint="${endpointName(e)}"} ${e.connections}\n`);
    }
    // Entry counts: what the agent wrote (it is the maps' one writer), not a read of every map:
    // sm_backends alone holds a million slots. The sockhash is counted by its keys.
    const entries = this.kernel.entries();
    out.push(header('sockmesh_map_entries', 'gauge', 'Entries in each kernel map (the active slot for config maps)'));
    for (const [map, n] of Object.entries(entries ?? {})) out.push(`sockmesh_map_entries{map="${map}"} ${n}\n`);
    out.push(`sockmesh_map_entries{map="sockhash"} ${maps.sockhash.countKeys()}\n`);
    out.push(header('sockmesh_map_capacity', 'gauge', 'max_entries of each kernel map'));
    for (const [map, m] of Object.entries(maps.active())) out.push(`sockmesh_map_capacity{map="${map}"} ${m.info.maxEntries}\n`);
    out.push(`sockmesh_map_capacity{map="sockhash"} ${maps.sockhash.info.maxEntries}\n`);
    return out.join('');
  }
}
