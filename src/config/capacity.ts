// How much the kernel maps hold: the max_entries of bpf/include/maps.h (SM_MAX_* in sockmesh.h).
// Validation refuses configs over these before anything is applied; test/e2e/capture.test.ts
// checks them against the loaded maps, and the reconciler checks every write against the live
// map's own max_entries as well.
export const CAPACITY = {
  /** sm_svc_state / sm_svc_auto: one slot per service id. */
  services: 1024,
  /** sm_services: one key per service address × port (an any-address service: one per port). */
  serviceKeys: 16384,
  /** sm_excl_ports, sm_incl_ports. */
  portList: 1024,
  /** sm_excl_cidrs, sm_incl_cidrs. */
  cidrList: 1024,
  /** sm_local_addrs: the pod's own addresses. */
  localAddrs: 256,
} as const;
