// The agent's Prometheus metrics (prom-client). Kernel counters are read from the maps at scrape
// time, per pod and per service; the agent's own work (reconciles, rejections) is counted as it
// happens.
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';
import type { InstanceMaps } from '../bpf/maps.js';
import { endpointCounters, readAllCounters } from './instance.js';

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

export interface KernelView {
  /** The open maps, or undefined before the data path is up. */
  maps(): InstanceMaps | undefined;
  /** Pod names by pod id and service names by service id, as last applied. */
  names(): { pods: Map<number, string>; services: Map<number, string> };
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

  constructor(version: string, kernel: KernelView) {
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
    this.podProblems = new Gauge({ name: 'sockmesh_pods_unresolved', help: 'Listed pods whose cgroup or network namespace was not found', registers });
    this.predating = new Gauge({
      name: 'sockmesh_connections_predating_capture', labelNames: ['pod'], registers,
      help: 'TCP connections a pod had open when capture first started: never captured nor spliced; they go direct until they reconnect',
    });

    const read = () => {
      const maps = kernel.maps();
      return maps ? { maps, counters: readAllCounters(maps) } : undefined;
    };
    new Counter({
      name: 'sockmesh_pod_events_total', help: 'Kernel data-path events per pod (BPF per-CPU counters, summed)', labelNames: ['pod', 'event'], registers,
      collect() {
        this.reset();
        const r = read();
        if (!r) return;
        const { pods } = kernel.names();
        for (const [podId, c] of r.counters.pods) {
          const pod = pods.get(podId) ?? (podId === 0 ? '(none)' : `(id ${podId})`);
          for (const [event, v] of Object.entries(c)) if (v) this.inc({ pod, event }, v);
        }
      },
    });
    new Counter({
      name: 'sockmesh_service_connections_total', help: 'Connections per service by outcome (captured, disabledSkips, spliced)', labelNames: ['service', 'outcome'], registers,
      collect() {
        this.reset();
        const r = read();
        if (!r) return;
        const { services } = kernel.names();
        for (const [id, c] of r.counters.services) {
          const service = services.get(id);
          if (!service) continue;
          for (const [outcome, v] of Object.entries(c)) if (v) this.inc({ service, outcome }, v);
        }
      },
    });
    new Counter({
      name: 'sockmesh_endpoint_connections_total', help: 'Connections (UDP: sockets) kernel mode gave each endpoint of a service', labelNames: ['service', 'endpoint'], registers,
      collect() {
        this.reset();
        const maps = kernel.maps();
        if (!maps) return;
        const { services } = kernel.names();
        for (const [k, v] of endpointCounters(maps)) {
          const [id, endpoint] = k.split(' ');
          const service = services.get(Number(id));
          if (service && v) this.inc({ service, endpoint }, v);
        }
      },
    });
    new Gauge({
      name: 'sockmesh_map_entries', help: 'Entries in each kernel map (the active slot for config maps)', labelNames: ['map'], registers,
      collect() {
        this.reset();
        const maps = kernel.maps();
        if (!maps) return;
        const slot = maps.active();
        for (const [name, m] of Object.entries(slot)) if (name !== 'svcState') this.set({ map: name }, m.rawEntries().length);
        this.set({ map: 'sockhash' }, maps.sockhash.rawEntries().length);
      },
    });
    new Gauge({
      name: 'sockmesh_map_capacity', help: 'max_entries of each kernel map', labelNames: ['map'], registers,
      collect() {
        this.reset();
        const maps = kernel.maps();
        if (!maps) return;
        for (const [name, m] of Object.entries(maps.active())) this.set({ map: name }, m.info.maxEntries);
        this.set({ map: 'sockhash' }, maps.sockhash.info.maxEntries);
      },
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
