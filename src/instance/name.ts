// Instance names: they name pin directories, records, locks and the control socket.
import { Codes, UserError } from '../errors.js';

export const INSTANCE_RE = /^[a-z0-9][a-z0-9_-]{0,39}$/;

export function checkInstanceName(name: string): string {
  if (!INSTANCE_RE.test(name)) {
    throw new UserError(Codes.USAGE, `invalid instance name "${name}": use a-z, 0-9, '-', '_' (at most 40)`);
  }
  return name;
}
