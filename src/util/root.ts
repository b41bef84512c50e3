// The one check every kernel-touching command makes first.
import { Codes, UserError } from '../errors.js';

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new UserError(Codes.NOT_ROOT, 'sockmesh needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) for this command');
  }
}
