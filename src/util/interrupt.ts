// Ctrl-C and SIGTERM during long work (bench, demo): the first signal asks the work to stop at its
// next step, which then unwinds through its cleanup (`finally`); a second signal exits at once.
import { Codes, UserError } from '../errors.js';

let received: NodeJS.Signals | undefined;

export function installInterruptHandlers(): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (received) process.exit(130);
      received = sig;
      process.stderr.write(`\nsockmesh: ${sig} received, cleaning up (send it again to exit at once)\n`);
    });
  }
}

/** Throws once a signal arrived; long loops call it between steps. */
export function checkInterrupted(): void {
  if (received) throw new UserError(Codes.INTERRUPTED, `interrupted by ${received}; everything this run created was removed`);
}
