// The benchmark's human outputs: the text table and an SVG chart.
import { MODE_LABELS, type BenchMode } from './env.js';
import type { BenchResult } from './run.js';
import type { Spread } from './stats.js';

function fmt(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (v >= 1000) return v.toFixed(0);
  if (v >= 100) return v.toFixed(1);
  return v.toFixed(2);
}

function cell(s: Spread | undefined, withSpread: boolean): string {
  if (!s || !s.n) return '-';
  return withSpread && s.n > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);
}

/** One row per workload figure, one column per mode, then the ratios. */
export function formatTable(res: BenchResult): string {
  const withSpread = res.repeats > 1;
  const kernel = res.modes.includes('ebpf-kernel');
  const header = ['workload', 'figure', ...res.modes, 'eBPF/iptables', 'eBPF/direct', ...(kernel ? ['kernel/iptables', 'kernel/direct'] : []), 'best eBPF mode'];
  const x = (v: number | undefined) => (v === undefined ? '-' : `${v.toFixed(2)}×`);
  const rows = res.rows.map((r) => [
    r.workload, `${r.metric} ${r.unit}`, ...res.modes.map((m) => cell(r.modes[m], withSpread)),
    x(r.ratios.ebpfVsIptables), x(r.ratios.ebpfVsDirect), ...(kernel ? [x(r.ratios.kernelVsIptables), x(r.ratios.kernelVsDirect)] : []),
    !r.bestEbpf ? '-' : r.bestEbpf.mode === 'ebpf-default' || r.bestEbpf.defaultBehind === 0 ? 'default' : `${r.bestEbpf.mode.replace('ebpf-', '')} (default −${(r.bestEbpf.defaultBehind * 100).toFixed(0)} %)`,
  ]);
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const notes = [
    `${res.repeats} repeat(s) of ${res.secondsPerRun}s per cell, modes interleaved; cells are medians${withSpread ? ' (min–max)' : ''}.`,
    'eBPF = sockmesh default mode. Latency and CPU: lower is better (ratio < 1 wins); MB/s and conn/s: higher is better (ratio > 1 wins).',
    'best eBPF mode: the best median among the eBPF sidecar modes (capture, splice, default), and how far behind it the default is. nagle rows write without TCP_NODELAY.',
    ...(kernel ? ['kernel/…: eBPF kernel mode (no sidecar: a service without L7 policy) against iptables + sidecar and against direct.'] : []),
    `kernel ${res.kernel}; modes: ${res.modes.map((m) => `${m} = ${MODE_LABELS[m]}`).join('; ')}`,
  ];
  const title = res.topology === 'same-node'
    ? 'Same node: client pod -> its sidecar -> server pod\'s sidecar -> server app, two meshed pods on one node\'s bridge'
    : 'Single pod: client pod -> its sidecar -> a server in a remote namespace';
  return [title, '', line(header), ...rows.map(line), '', ...notes].join('\n');
}

const COLORS: Record<BenchMode, string> = {
  direct: '#888888', iptables: '#d62728', 'ebpf-capture': '#ff7f0e', 'ebpf-splice': '#9467bd', 'ebpf-default': '#2ca02c', 'ebpf-kernel': '#17becf',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

interface Panel {
  title: string;
  rows: BenchResult['rows'];
  /** Divide each figure by this mode's median of the same row (relative panels). */
  relativeTo?: BenchMode;
  label: (r: BenchResult['rows'][number]) => string;
}

/**
 * Grouped bar charts, one bar per mode with its min–max whisker and median value: latency
 * percentiles at 64 B and 1 KiB, streaming throughput relative to iptables per message size (the
 * absolute figures span three orders of magnitude), and connections per second. The scale follows
 * the medians; a whisker that leaves the panel is clipped.
 */
export function toSvg(res: BenchResult): string {
  const pick = (f: (r: BenchResult['rows'][number]) => boolean) => res.rows.filter(f);
  const all: Panel[] = [
    { title: 'Request/response latency, 64 B messages (µs, lower is better)', rows: pick((r) => r.workload === 'rr-64' && r.metric !== 'cpuPerMsg'), label: (r) => r.metric },
    { title: 'Request/response latency, 1 KiB messages (µs, lower is better)', rows: pick((r) => r.workload === 'rr-1k' && r.metric !== 'cpuPerMsg'), label: (r) => r.metric },
    { title: 'Streaming throughput relative to iptables + sidecar (×, higher is better)', rows: pick((r) => r.metric === 'MBps'), relativeTo: 'iptables', label: (r) => r.workload },
    { title: 'New connections per second (connect, 64 B exchange, close; higher is better)', rows: pick((r) => r.metric === 'cps'), label: (r) => r.workload },
  ];
  const panels = all.filter((p) => p.rows.length);
  const W = 960;
  const PH = 250;
  const out: string[] = [];
  panels.forEach((p, pi) => {
    const y0 = 40 + pi * (PH + 45);
    const base = (r: BenchResult['rows'][number]) => (p.relativeTo ? r.modes[p.relativeTo]?.median ?? NaN : 1);
    const max = Math.max(...p.rows.flatMap((r) => res.modes.map((m) => (r.modes[m]?.median ?? 0) / base(r))).filter(Number.isFinite), 1e-9) * 1.2;
    const yOf = (v: number) => y0 + PH - 30 - Math.min(v / max, 1.04) * (PH - 45);
    out.push(`<text x="10" y="${y0 - 12}" font-size="15" font-weight="bold">${esc(p.title)}</text>`);
    const groupW = (W - 80) / p.rows.length;
    const barW = Math.min(34, (groupW - 14) / res.modes.length);
    p.rows.forEach((r, gi) => {
      const gx = 60 + gi * groupW;
      res.modes.forEach((m, mi) => {
        const s = r.modes[m];
        if (!s || !s.n) return;
        const b = base(r);
        const x = gx + mi * barW;
        const top = yOf(s.median / b);
        out.push(`<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 3).toFixed(1)}" height="${(y0 + PH - 30 - top).toFixed(1)}" fill="${COLORS[m]}"><title>${esc(`${MODE_LABELS[m]} ${r.workload} ${r.metric}: ${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`)}</title></rect>`);
        if (s.n > 1) {
          const cx = (x + barW / 2 - 1.5).toFixed(1);
          out.push(`<line x1="${cx}" x2="${cx}" y1="${yOf(s.max / b).toFixed(1)}" y2="${yOf(s.min / b).toFixed(1)}" stroke="black" stroke-width="1"/>`);
        }
        out.push(`<text x="${(x + barW / 2 - 1.5).toFixed(1)}" y="${(top - 3).toFixed(1)}" font-size="9" text-anchor="middle">${esc(p.relativeTo ? (s.median / b).toFixed(2) : fmt(s.median))}</text>`);
      });
      out.push(`<text x="${(gx + (res.modes.length * barW) / 2).toFixed(1)}" y="${y0 + PH - 12}" font-size="12" text-anchor="middle">${esc(p.label(r))}</text>`);
    });
    out.push(`<line x1="55" x2="${W - 10}" y1="${y0 + PH - 30}" y2="${y0 + PH - 30}" stroke="#333"/>`);
    if (p.relativeTo) {
      const y1 = yOf(1).toFixed(1);
      out.push(`<line x1="55" x2="${W - 10}" y1="${y1}" y2="${y1}" stroke="#d62728" stroke-dasharray="4 3"/><text x="50" y="${y1}" font-size="10" text-anchor="end">1.0</text>`);
    }
  });
  const legendY = 40 + panels.length * (PH + 45) - 10;
  res.modes.forEach((m, i) => {
    const x = 20 + (i % 3) * 310;
    const y = legendY + Math.floor(i / 3) * 20;
    out.push(`<rect x="${x}" y="${y}" width="14" height="14" fill="${COLORS[m]}"/><text x="${x + 20}" y="${y + 12}" font-size="12">${esc(MODE_LABELS[m])}</text>`);
  });
  const notes = `${res.repeats} repeat(s) × ${res.secondsPerRun}s, medians with min–max whiskers; kernel ${res.kernel}; ${res.startedAt}`;
  out.push(`<text x="20" y="${legendY + 58}" font-size="11" fill="#444">${esc(notes)}</text>`);
  const H = legendY + 70;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${out.join('\n')}\n</svg>\n`;
}
