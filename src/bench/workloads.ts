// The rows of the benchmark table: what smload runs and which number is reported.

export type Metric = 'p50' | 'p90' | 'p99' | 'p999' | 'MBps' | 'cps' | 'cpuPerMsg';

export interface Workload {
  id: string;
  /** nagle: a stream without TCP_NODELAY, where TCP may coalesce small writes. */
  test: 'rr' | 'stream' | 'nagle' | 'conn';
  size: number;
  /** Which server port: echo for rr/conn, sink for stream. */
  port: 'echo' | 'sink';
  /** The figures this workload yields; `better` says which direction wins. */
  metrics: Array<{ metric: Metric; unit: string; better: 'lower' | 'higher' }>;
}

const lat = (m: Metric) => ({ metric: m, unit: 'µs', better: 'lower' as const });
const cpu = { metric: 'cpuPerMsg' as const, unit: 'µs CPU/msg', better: 'lower' as const };

export const WORKLOADS: Workload[] = [
  { id: 'rr-64', test: 'rr', size: 64, port: 'echo', metrics: [lat('p50'), lat('p90'), lat('p99'), lat('p999'), cpu] },
  { id: 'rr-1k', test: 'rr', size: 1024, port: 'echo', metrics: [lat('p50'), lat('p90'), lat('p99'), lat('p999'), cpu] },
  ...[64, 1024, 16384, 65536, 1048576].map((size) => ({
    id: `stream-${size >= 1048576 ? `${size / 1048576}m` : size >= 1024 ? `${size / 1024}k` : size}`,
    test: 'stream' as const, size, port: 'sink' as const,
    metrics: [{ metric: 'MBps' as const, unit: 'MB/s', better: 'higher' as const }, cpu],
  })),
  ...[64, 1024].map((size) => ({
    id: `nagle-${size >= 1024 ? `${size / 1024}k` : size}`, test: 'nagle' as const, size, port: 'sink' as const,
    metrics: [{ metric: 'MBps' as const, unit: 'MB/s', better: 'higher' as const }, cpu],
  })),
  { id: 'conn-64', test: 'conn', size: 64, port: 'echo', metrics: [{ metric: 'cps', unit: 'conn/s', better: 'higher' }, cpu] },
];
