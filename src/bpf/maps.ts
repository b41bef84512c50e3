// The instance's pinned maps that user space reads or writes, opened with their codecs (sizes
// are checked against the pinned maps on open). The config-driven maps exist once per slot
// (sm_pods_a / sm_pods_b …); sm_gen names the slot the programs read. The connect4→sockops→
// getsockopt hand-over maps (sm_cookie_dst, sm_tuple_dst, sm_peer_sk) are kernel-only.
import { BpfMap, PerCpuCounters, perCpuHashSums } from './map.js';
import type { Codec } from './codec.js';
import {
  addrKeyCodec, backendCodec, backendKeyCodec, configCodec, localPodCodec, lpmKeyCodec, origDstCodec, podCodec, portKeyCodec, svcAutoCodec, svcKeyCodec, svcStateCodec, svcValCodec, tupleCodec,
  udpKeyCodec, u32Codec, u64Codec, u8Codec, STATS, SVC_STATS,
} from './codecs.js';
import { mapPath, type PinLayout } from './pins.js';
import type { MapName } from './programs.js';

function openSlot(open: <K, V>(name: MapName, key: Codec<K>, value: Codec<V>) => BpfMap<K, V>, suffix: 'a' | 'b') {
  return {
    pods: open(`sm_pods_${suffix}`, u64Codec, podCodec),
    services: open(`sm_services_${suffix}`, svcKeyCodec, svcValCodec),
    svcState: open(`sm_svc_state_${suffix}`, u32Codec, svcStateCodec),
    ports: open(`sm_ports_${suffix}`, portKeyCodec, u8Codec),
    cidrs: open(`sm_cidrs_${suffix}`, lpmKeyCodec, u8Codec),
    backends: open(`sm_backends_${suffix}`, backendKeyCodec, backendCodec),
    localAddrs: open(`sm_local_addrs_${suffix}`, addrKeyCodec, localPodCodec),
  };
}

export type SlotMaps = ReturnType<typeof openSlot>;

export class InstanceMaps {
  private readonly opened: Array<{ close(): void }> = [];
  /** sm_gen: index 0 holds the active slot. */
  readonly gen;
  /** sm_config: node-wide settings, one entry per slot. */
  readonly config;
  readonly slots: [SlotMaps, SlotMaps];
  /** splice: auto: what each service's Nagle-at-connect client sockets do later. */
  readonly svcAuto;
  /** Kernel-mode connections: socket cookie -> the service address they asked for. */
  readonly cookieSvc;
  /** Kernel-mode UDP: the endpoint each socket uses for a service. */
  readonly udpPick;
  /** Spliced sockets: tuple -> socket cookie. */
  readonly sockhash;
  /** Each pod's sidecar inbound listener: pod id -> socket cookie (write: a socket fd). */
  readonly listeners;
  /** Per-pod counters: one block of SM_STAT_MAX per pod id. */
  readonly stats: PerCpuCounters;
  /** Per-service counters: one block of SM_SVC_STAT_MAX per service id. */
  readonly svcStats: PerCpuCounters;

  constructor(readonly layout: PinLayout) {
    try {
      const open = <K, V>(name: MapName, key: Codec<K>, value: Codec<V>) => this.open(name, key, value);
      this.gen = this.open('sm_gen', u32Codec, u32Codec);
      this.config = this.open('sm_config', u32Codec, configCodec);
      this.slots = [openSlot(open, 'a'), openSlot(open, 'b')];
      this.svcAuto = this.open('sm_svc_auto', u32Codec, svcAutoCodec);
      this.cookieSvc = this.open('sm_cookie_svc', u64Codec, origDstCodec);
      this.udpPick = this.open('sm_udp_pick', udpKeyCodec, backendCodec);
      this.sockhash = this.open('sm_sockhash', tupleCodec, u64Codec);
      this.listeners = this.open('sm_listeners', u32Codec, u64Codec);
      this.stats = this.counters('sm_stats', STATS.SM_STAT_MAX);
      this.svcStats = this.counters('sm_svc_stats', SVC_STATS.SM_SVC_STAT_MAX);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** Connections per endpoint of kernel-mode services (sm_endpoint_stats, summed over CPUs). */
  endpointSums(): Array<{ key: Buffer; sum: number }> {
    return perCpuHashSums(mapPath(this.layout, 'sm_endpoint_stats'));
  }

  /** The slot the programs read now (0 or 1). */
  activeSlot(): number {
    return this.gen.get(0) ? 1 : 0;
  }

  /** The maps of the slot the programs read now. */
  active(): SlotMaps {
    return this.slots[this.activeSlot()];
  }

  private counters(name: MapName, stride: number): PerCpuCounters {
    const c = new PerCpuCounters(mapPath(this.layout, name), stride);
    this.opened.push(c);
    return c;
  }

  private open<K, V>(name: MapName, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    const m = BpfMap.open(mapPath(this.layout, name), key, value);
    this.opened.push(m);
    return m;
  }

  close(): void {
    for (const m of this.opened.reverse()) m.close();
    this.opened.length = 0;
  }
}
