// Telling a cluster's users what sockmesh did not apply: a Warning Event on the object (and a log
// line), once per version of the object and message, posted best effort.
import type { KubeConfig } from '@kubernetes/client-node';
import { ConfigError, describe } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import type { Problem } from './annotations.js';
import { postEvent } from './client.js';
import { objectName, type Meta } from './objects.js';

export interface ObjectRef {
  kind: string;
  apiVersion: string;
  metadata: Meta;
}

/** The log line of each reason. */
const LOG: Record<string, string> = {
  SockmeshInvalidAnnotation: 'malformed annotation or policy; that object keeps its last good state',
  SockmeshInvalidPolicy: 'malformed annotation or policy; that object keeps its last good state',
  SockmeshIgnoredFields: 'fields sockmesh does not enforce',
  SockmeshConflict: 'an object left out of the node\'s state (or part of it)',
  SockmeshCapacity: 'an object left out of the node\'s state (or part of it)',
  SockmeshNotApplied: 'an object left out of the node\'s state (or part of it)',
};

export class EventReporter {
  private readonly reported = new Set<string>();

  constructor(private readonly kc: KubeConfig, private readonly node: string, private readonly log: Logger) {}

  /** A malformed object (or one with fields sockmesh does not enforce, or one left out): logged,
   * and a Warning Event on it (once per version of the object). */
  report(obj: ObjectRef, problems: Problem[], reason = 'SockmeshInvalidAnnotation', lead = `sockmesh keeps this ${obj.kind}'s last good state`): void {
    const name = objectName(obj.metadata);
    const message = `${lead}: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`;
    const key = `${obj.kind}/${name}/${obj.metadata.resourceVersion}/${message}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    if (this.reported.size > 10_000) this.reported.clear();
    this.log.warn({ kind: obj.kind, object: name, reason, problems }, LOG[reason] ?? LOG.SockmeshInvalidAnnotation);
    void postEvent(this.kc, obj, this.node, reason, message).then((err) => {
      if (err) this.log.warn({ kind: obj.kind, object: name, error: err }, 'cannot post the Event');
    });
  }
}

/** A validation failure as the problems a Warning Event lists. */
export function problemsOf(e: unknown): Problem[] {
  return e instanceof ConfigError ? e.issues.map((i) => ({ field: i.path, message: i.message })) : [{ field: '', message: describe(e) }];
}
