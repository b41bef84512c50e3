// What a control-plane source tells the agent. A source produces complete, validated desired
// states and never touches the kernel; anything short of a config leaves the last good state
// applied.
import type { MeshConfig } from '../config/model.js';

export type SourceEvent =
  /** A complete desired state; `unresolved`: meshed pods the source knows of but could not find
   * on the node yet (they join the state once found). */
  | { kind: 'config'; config: MeshConfig; source: string; unresolved?: Array<{ pod: string; message: string }> }
  /** The source's content is invalid as a whole. */
  | { kind: 'rejected'; source: string; issues: Array<{ path: string; message: string }>; message: string }
  /** The source is gone (a deleted file). */
  | { kind: 'missing'; source: string; message: string }
  /** The source cannot be read for now (an API server that is down): what is applied may be behind. */
  | { kind: 'stale'; source: string; message: string }
  /** The source is reachable again and what is applied is current (no change to apply). */
  | { kind: 'fresh'; source: string };

export interface Source {
  /** Where the desired state comes from, for logs and the record (a path, or "kubernetes …"). */
  readonly description: string;
  start(): void;
  stop(): void;
  /** Looks for the pods it could not find yet, now (a pod asked to be meshed). */
  lookAgain?(): void;
}
