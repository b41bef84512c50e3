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
  const header = ['workload', 'figure', ...res.modes, 'eBPF/iptables', 'eBPF/direct'];
  const rows = res.rows.map((r) => [
    r.workload, `${r.metric} ${r.unit}`, ...res.modes.map((m) => cell(r.modes[m], withSpread)),
    r.ratios.ebpfVsIptables === undefined ? '-' : `${r.ratios.ebpfVsIptables.toFixed(2)}×`,
    r.ratios.ebpfVsDirect === undefined ? '-' : `${r.ratios.ebpfVsDirect.toFixed(2)}×`,
  ]);
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const notes = [
    `${res.repeats} repeat(s) of ${res.secondsPerRun}s per cell, modes interleaved; cells are medians${withSpread ? ' (min–max)' : ''}.`,
    'eBPF = sockmesh default mode. Latency and CPU: lower is better (ratio < 1 wins); MB/s and conn/s: higher is better (ratio > 1 wins).',
    `kernel ${res.kernel}; modes: ${res.modes.map((m) => `${m} = ${MODE_LABELS[m]}`).join('; ')}`,
  ];
  return [line(header), ...rows.map(line), '', ...notes].join('\n');
}

const COLORS: Record<BenchMode, string> = {
  direct: '#888888', iptables: '#d62728', 'ebpf-capture': '#ff7f0e', 'ebpf-splice': '#9467bd', 'ebpf-default': '#2ca02c',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

/** Grouped bar charts: latency percentiles (64 B RR) and throughput per message size, per mode. */
export function toSvg(res: BenchResult): string {
  const panels = [
    { title: 'Request/response latency, 64 B (µs, lower is better)', rows: res.rows.filter((r) => r.workload === 'rr-64' && r.metric !== 'cpuPerMsg') },
    { title: 'Request/response latency, 1 KiB (µs, lower is better)', rows: res.rows.filter((r) => r.workload === 'rr-1k' && r.metric !== 'cpuPerMsg') },
    { title: 'Streaming throughput (MB/s, higher is better)', rows: res.rows.filter((r) => r.metric === 'MBps') },
    { title: 'New connections per second (higher is better)', rows: res.rows.filter((r) => r.metric === 'cps') },
  ].filter((p) => p.rows.length);
  const W = 900;
  const PH = 260;
  const out: string[] = [];
  panels.forEach((p, pi) => {
    const y0 = 40 + pi * (PH + 40);
    const max = Math.max(...p.rows.flatMap((r) => res.modes.map((m) => r.modes[m]?.max ?? 0)), 1e-9);
    out.push(`<text x="10" y="${y0 - 12}" font-size="15" font-weight="bold">${esc(p.title)}</text>`);
    const groupW = (W - 80) / p.rows.length;
    const barW = Math.min(28, (groupW - 10) / res.modes.length);
    p.rows.forEach((r, gi) => {
      const gx = 60 + gi * groupW;
      res.modes.forEach((m, mi) => {
        const s = r.modes[m];
        if (!s || !s.n) return;
        const h = (s.median / max) * (PH - 40);
        const x = gx + mi * barW;
        const y = y0 + PH - 30 - h;
        out.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[m]}"><title>${esc(`${m} ${r.workload} ${r.metric}: ${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`)}</title></rect>`);
        const eh = ((s.max - s.min) / max) * (PH - 40);
        const ey = y0 + PH - 30 - (s.max / max) * (PH - 40);
        if (s.n > 1) out.push(`<line x1="${(x + barW / 2 - 1).toFixed(1)}" x2="${(x + barW / 2 - 1).toFixed(1)}" y1="${ey.toFixed(1)}" y2="${(ey + eh).toFixed(1)}" stroke="black"/>`);
      });
      out.push(`<text x="${(gx + (res.modes.length * barW) / 2).toFixed(1)}" y="${y0 + PH - 12}" font-size="12" text-anchor="middle">${esc(r.metric === 'MBps' || r.metric === 'cps' ? r.workload : r.metric)}</text>`);
    });
    out.push(`<line x1="55" x2="${W - 10}" y1="${y0 + PH - 30}" y2="${y0 + PH - 30}" stroke="#333"/>`);
    out.push(`<text x="50" y="${y0 + 10}" font-size="11" text-anchor="end">${fmt(max)}</text>`);
  });
  const legendY = 40 + panels.length * (PH + 40);
  res.modes.forEach((m, i) => {
    out.push(`<rect x="${20 + i * 175}" y="${legendY}" width="14" height="14" fill="${COLORS[m]}"/><text x="${38 + i * 175}" y="${legendY + 12}" font-size="12">${esc(MODE_LABELS[m])}</text>`);
  });
  const H = legendY + 40;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${out.join('\n')}\n</svg>\n`;
}
