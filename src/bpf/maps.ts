// The instance's pinned maps, opened with their codecs.
import { BpfMap, PerCpuCounters } from './map.js';
import {
  configCodec, lpmKeyCodec, origDstCodec, svcAutoCodec, svcKeyCodec, svcStateCodec, svcValCodec, tupleCodec,
  u16Codec, u32Codec, u64Codec, u8Codec,
  type LpmKey, type OrigDst, type SmConfig, type SvcAuto, type SvcKey, type SvcState, type SvcVal, type Tuple,
} from './codecs.js';
import { mapPath, type PinLayout } from './datapath.js';

export class InstanceMaps {
  readonly config: BpfMap<number, SmConfig>;
  readonly services: BpfMap<SvcKey, SvcVal>;
  readonly svcState: BpfMap<number, SvcState>;
  readonly svcAuto: BpfMap<number, SvcAuto>;
  readonly exclPorts: BpfMap<number, number>;
  readonly exclCidrs: BpfMap<LpmKey, number>;
  readonly inclPorts: BpfMap<number, number>;
  readonly inclCidrs: BpfMap<LpmKey, number>;
  readonly localAddrs: BpfMap<LpmKey, number>;
  readonly cookieDst: BpfMap<number, OrigDst>;
  readonly tupleDst: BpfMap<Tuple, OrigDst>;
  /** Spliced sockets: tuple -> socket cookie. */
  readonly sockhash: BpfMap<Tuple, number>;
  readonly stats: PerCpuCounters;
  private readonly opened: Array<{ close(): void }> = [];

  constructor(layout: PinLayout) {
    try {
      this.config = this.track(BpfMap.open(mapPath(layout, 'sm_config'), u32Codec, configCodec));
      this.services = this.track(BpfMap.open(mapPath(layout, 'sm_services'), svcKeyCodec, svcValCodec));
      this.svcState = this.track(BpfMap.open(mapPath(layout, 'sm_svc_state'), u32Codec, svcStateCodec));
      this.svcAuto = this.track(BpfMap.open(mapPath(layout, 'sm_svc_auto'), u32Codec, svcAutoCodec));
      this.exclPorts = this.track(BpfMap.open(mapPath(layout, 'sm_excl_ports'), u16Codec, u8Codec));
      this.exclCidrs = this.track(BpfMap.open(mapPath(layout, 'sm_excl_cidrs'), lpmKeyCodec, u8Codec));
      this.inclPorts = this.track(BpfMap.open(mapPath(layout, 'sm_incl_ports'), u16Codec, u8Codec));
      this.inclCidrs = this.track(BpfMap.open(mapPath(layout, 'sm_incl_cidrs'), lpmKeyCodec, u8Codec));
      this.localAddrs = this.track(BpfMap.open(mapPath(layout, 'sm_local_addrs'), lpmKeyCodec, u8Codec));
      this.cookieDst = this.track(BpfMap.open(mapPath(layout, 'sm_cookie_dst'), u64Codec, origDstCodec));
      this.tupleDst = this.track(BpfMap.open(mapPath(layout, 'sm_tuple_dst'), tupleCodec, origDstCodec));
      this.sockhash = this.track(BpfMap.open(mapPath(layout, 'sm_sockhash'), tupleCodec, u64Codec));
      this.stats = this.track(new PerCpuCounters(mapPath(layout, 'sm_stats')));
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private track<T extends { close(): void }>(m: T): T {
    this.opened.push(m);
    return m;
  }

  close(): void {
    for (const m of this.opened.reverse()) m.close();
    this.opened.length = 0;
  }
}
