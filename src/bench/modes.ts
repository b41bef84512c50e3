// The bench's modes: their names and labels (a module of its own, so the CLI can list them
// without loading the bench).
export type BenchMode = 'direct' | 'iptables' | 'ebpf-capture' | 'ebpf-splice' | 'ebpf-default';

export const MODES: BenchMode[] = ['direct', 'iptables', 'ebpf-capture', 'ebpf-splice', 'ebpf-default'];

export const MODE_LABELS: Record<BenchMode, string> = {
  direct: 'direct (no sidecar)',
  iptables: 'iptables + sidecar',
  'ebpf-capture': 'eBPF capture only + sidecar',
  'ebpf-splice': 'eBPF always-splice + sidecar',
  'ebpf-default': 'eBPF default + sidecar',
};
