// The bench's modes: their names and labels (a module of its own, so the CLI can list them
// without loading the bench).
export type BenchMode = 'direct' | 'iptables' | 'ebpf-capture' | 'ebpf-splice' | 'ebpf-default' | 'ebpf-kernel';

export const MODES: BenchMode[] = ['direct', 'iptables', 'ebpf-capture', 'ebpf-splice', 'ebpf-default', 'ebpf-kernel'];

export const MODE_LABELS: Record<BenchMode, string> = {
  direct: 'direct (no sidecar)',
  iptables: 'iptables + sidecar',
  'ebpf-capture': 'eBPF capture only + sidecar',
  'ebpf-splice': 'eBPF always-splice + sidecar',
  'ebpf-default': 'eBPF default + sidecar',
  'ebpf-kernel': 'eBPF kernel mode (mode: kernel: straight to the endpoint, no sidecar)',
};
