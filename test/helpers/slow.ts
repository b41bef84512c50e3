// Timeouts in tests scale with SOCKMESH_TEST_TIME_SCALE: the VM lane runs under software
// emulation, 3-14x slower than the host (scripts/vm-guest.sh sets it).
export const TIME_SCALE = Math.max(1, Number(process.env.SOCKMESH_TEST_TIME_SCALE ?? 1) || 1);

export function slow(ms: number): number {
  return ms * TIME_SCALE;
}
