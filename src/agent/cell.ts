// The agent's parts: each starts and stops on its own, and NodeAgent starts them in order and stops
// them in reverse (Cilium's hive "cells", in a few lines). A part that fails to start stops the
// ones before it.

export interface Cell {
  /** For the log line of a part that cannot stop. */
  readonly name: string;
  start?(): Promise<void>;
  stop?(): Promise<void> | void;
}

export class Cells {
  private readonly started: Cell[] = [];

  constructor(private readonly cells: readonly Cell[], private readonly onStopError: (cell: string, error: unknown) => void) {}

  /** Starts each part in order; on a failure the started ones are stopped again and it throws. */
  async start(): Promise<void> {
    for (const c of this.cells) {
      try {
        await c.start?.();
      } catch (err) {
        this.started.push(c); // a part that failed half-way stops what it started
        await this.stop();
        throw err;
      }
      this.started.push(c);
    }
  }

  /** Stops the started parts, last first; one that fails to stop does not keep the others up. */
  async stop(): Promise<void> {
    for (const c of this.started.splice(0).reverse()) {
      try {
        await c.stop?.();
      } catch (err) {
        this.onStopError(c.name, err);
      }
    }
  }
}
