// How much the kernel maps hold: the max_entries of bpf/include/maps.h (SM_MAX_* in sockmesh.h).
// Validation refuses configs over these before anything is applied; test/bpf/codecs.test.ts
// checks LIMITS against the header, a privileged test checks these against the loaded maps, and
// the reconciler checks every write against the live map's own max_entries as well.
export const CAPACITY = {
  /** sm_svc_state: one slot per service id. */
  services: 16384,
  /** sm_services: one key per service address × port (an any-address service: one per port). */
  serviceKeys: 65536,
  /** sm_pods: pods of one node. */
  pods: 1024,
  /** sm_ports: excluded and included ports of every pod together. */
  portRules: 16384,
  /** sm_cidrs: excluded, included and local CIDRs of every pod together. */
  cidrRules: 16384,
  /** sm_backends: Maglev table slots of every kernel-mode service (SM_MAGLEV_M each). */
  backendSlots: 1048576,
  /** Slots of one kernel-mode service's Maglev table. */
  maglevSlots: 1021,
} as const;
