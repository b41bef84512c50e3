// The instance's pinned maps that user space reads or writes, opened with their codecs (sizes
// are checked against the pinned maps on open). The connect4→sockops→getsockopt hand-over maps
// (sm_cookie_dst, sm_tuple_dst) are kernel-only and not opened here.
import { BpfMap, PerCpuCounters } from './map.js';
import type { Codec } from './codec.js';
import {
  configCodec, lpmKeyCodec, svcAutoCodec, svcKeyCodec, svcStateCodec, svcValCodec, tupleCodec,
  u16Codec, u32Codec, u64Codec, u8Codec,
} from './codecs.js';
import { mapPath, type PinLayout } from './datapath.js';
import type { MapName } from './programs.js';

export class InstanceMaps {
  private readonly opened: Array<{ close(): void }> = [];
  readonly config;
  readonly services;
  readonly svcState;
  readonly svcAuto;
  readonly exclPorts;
  readonly exclCidrs;
  readonly inclPorts;
  readonly inclCidrs;
  readonly localAddrs;
  /** Spliced sockets: tuple -> socket cookie. */
  readonly sockhash;
  readonly stats: PerCpuCounters;

  constructor(private readonly layout: PinLayout) {
    try {
      this.config = this.open('sm_config', u32Codec, configCodec);
      this.services = this.open('sm_services', svcKeyCodec, svcValCodec);
      this.svcState = this.open('sm_svc_state', u32Codec, svcStateCodec);
      this.svcAuto = this.open('sm_svc_auto', u32Codec, svcAutoCodec);
      this.exclPorts = this.open('sm_excl_ports', u16Codec, u8Codec);
      this.exclCidrs = this.open('sm_excl_cidrs', lpmKeyCodec, u8Codec);
      this.inclPorts = this.open('sm_incl_ports', u16Codec, u8Codec);
      this.inclCidrs = this.open('sm_incl_cidrs', lpmKeyCodec, u8Codec);
      this.localAddrs = this.open('sm_local_addrs', lpmKeyCodec, u8Codec);
      this.sockhash = this.open('sm_sockhash', tupleCodec, u64Codec);
      this.stats = new PerCpuCounters(mapPath(layout, 'sm_stats'));
      this.opened.push(this.stats);
    } catch (err) {
      this.close();
      throw err;
    }
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
