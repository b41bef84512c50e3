// The instance record as the agent last applied it, written a moment after the last apply: with
// 10,000 services it is megabytes of JSON, and a burst of edits needs only the last. The kernel is
// never behind it: an agent that dies before the write re-applies from its source on start.
// `status` and stop flush it. The agent holds the instance lock, so nobody else writes it.
import { writeRecord, type InstanceRecord } from '../instance/record.js';
import type { Cell } from './cell.js';

export class RecordWriter implements Cell {
  readonly name = 'record writer';
  private record: InstanceRecord | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly delayMs = 1000) {}

  /** The record as last written or scheduled. */
  get current(): InstanceRecord | undefined {
    return this.record;
  }

  /** Takes a record that is on disk already (the start's). */
  written(rec: InstanceRecord): void {
    this.record = rec;
  }

  schedule(rec: InstanceRecord): void {
    this.record = rec;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), this.delayMs);
  }

  flush(): void {
    if (!this.timer) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.record) writeRecord(this.record);
  }

  stop(): void {
    this.flush();
  }
}
