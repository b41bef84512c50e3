// A child process whose stdout is JSON lines, with waiting for a line and a clean kill by pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type Line = Record<string, unknown>;

export class Proc {
  readonly child: ChildProcess;
  readonly lines: Line[] = [];
  stderr = '';
  private waiters: Array<{ pred: (l: Line) => boolean; resolve: (l: Line) => void }> = [];
  readonly exited: Promise<number>;

  constructor(readonly label: string, cmd: string, args: string[]) {
    this.child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (text) => {
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        line = { text };
      }
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => (w.pred(line) ? (w.resolve(line), false) : true));
    });
    this.child.stderr!.on('data', (b: Buffer) => { this.stderr += b.toString(); });
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code ?? 128)));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** The first line (already seen or to come) that matches, or an error after the timeout. */
  waitFor(pred: (l: Line) => boolean, timeoutMs = 60_000): Promise<Line> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.label}: timed out waiting for output; stderr: ${this.stderr.slice(-500)}`)), timeoutMs);
      const done = (l: Line) => { clearTimeout(timer); resolve(l); };
      this.waiters.push({ pred, resolve: done });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${this.label} exited with ${code} before the expected output; stderr: ${this.stderr.slice(-500)}`));
      });
    });
  }

  /**
   * The first matching line at index `from` or later: take `from` = lines.length before the action
   * whose output is awaited, so an earlier line that matches does not count.
   */
  waitForFrom(from: number, pred: (l: Line) => boolean, timeoutMs = 60_000): Promise<Line> {
    return this.waitFor((l) => this.lines.indexOf(l) >= from && pred(l), timeoutMs);
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
  async kill(graceMs = 2000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
