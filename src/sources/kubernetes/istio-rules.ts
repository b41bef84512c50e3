// Istio's DestinationRules and VirtualServices for the Kubernetes source: their group watched as
// istio-group.ts does it (preferred of v1/v1beta1/v1alpha3; absent CRDs = no policy objects, never
// a failure), and each object's last good policy.
import type { KubeConfig } from '@kubernetes/client-node';
import { validateService } from '../../config/validate/index.js';
import type { Logger } from '../../util/log.js';
import type { InformerOptions } from './client.js';
import { problemsOf, type EventReporter } from './events.js';
import type { SourceHealth } from './health.js';
import { IstioGroupReader, IstioGroupWatch } from './istio-group.js';
import {
  destinationRulePolicy, hostsOf, ISTIO_GROUP, ISTIO_VERSIONS, pickFor, virtualServicePolicy, type IstioObject, type PolicyFragment,
} from './istio.js';
import { objectName } from './objects.js';

type IstioKind = 'destinationrules' | 'virtualservices';
const ISTIO_KINDS: readonly IstioKind[] = ['destinationrules', 'virtualservices'];

/** A DestinationRule or VirtualService as last read, with the policy it gives each Service it names (last good). */
interface RuleEntry { obj: IstioObject; hosts: string[]; policies: Map<string, Record<string, unknown>> }

export interface IstioRulesOptions {
  kc: KubeConfig;
  log: Logger;
  health: SourceHealth;
  events: EventReporter;
  /** The source's description (for validation messages). */
  description: string;
  /** Something changed: the state is built again soon. */
  changed(): void;
  /** These Services (name.namespace) may have another policy now. */
  retranslate(names: Iterable<string>): void;
  informer?: InformerOptions;
  recheckMs?: number;
}

export class IstioRules extends IstioGroupReader<IstioKind> {
  private readonly rules: Record<IstioKind, Map<string, RuleEntry>> = { destinationrules: new Map(), virtualservices: new Map() };
  protected readonly watch: IstioGroupWatch<IstioKind>;

  constructor(private readonly o: IstioRulesOptions) {
    super();
    this.watch = new IstioGroupWatch(o, {
      group: ISTIO_GROUP, versions: ISTIO_VERSIONS, kinds: ISTIO_KINDS, what: 'Istio traffic policy objects',
      object: (kind, obj, deleted, apiVersion) => this.onRule(kind, obj, deleted, apiVersion),
      none: () => {
        for (const kind of ISTIO_KINDS) {
          const hosts = [...this.rules[kind].values()].flatMap((r) => r.hosts);
          this.rules[kind].clear();
          this.o.retranslate(hosts);
        }
      },
    });
  }

  /** The policy Istio's objects give a Service: its DestinationRule's, then its VirtualService's. */
  policyFor(name: string): Record<string, unknown> | undefined {
    const rule = (kind: IstioKind) => {
      const o = pickFor(name, [...this.rules[kind].values()].filter((r) => r.hosts.includes(name)).map((r) => r.obj));
      return o ? this.rules[kind].get(objectName(o.metadata))!.policies.get(name) ?? {} : {};
    };
    const p = { ...rule('destinationrules'), ...rule('virtualservices') };
    return Object.keys(p).length ? p : undefined;
  }

  /** A DestinationRule or VirtualService: checked on its own (a bad one is reported on it and keeps
   * its last good policy), then the Services it names (before and after) are translated again. */
  private onRule(kind: IstioKind, obj: IstioObject, deleted: boolean, apiVersion: string): void {
    const key = objectName(obj.metadata);
    const rules = this.rules[kind];
    const affected = rules.get(key)?.hosts ?? [];
    if (deleted) rules.delete(key);
    else {
      const hosts = hostsOf(kind, obj);
      // A VirtualService's routes read differently for each of its hosts (a route to the first
      // host is a plain policy for it, a route elsewhere for the others).
      const frags = new Map<string, PolicyFragment>(hosts.map((h) => [h, kind === 'destinationrules' ? destinationRulePolicy(obj) : virtualServicePolicy(obj, undefined, h)]));
      const ref = { kind: kind === 'destinationrules' ? 'DestinationRule' : 'VirtualService', apiVersion, metadata: obj.metadata };
      try {
        // Checked as a service's policy block: problems are named policy.<field>, under Istio's names.
        for (const [h, f] of frags) validateService({ name: h, addresses: [], ports: [1], protocol: 'http', policy: f.policy }, '', this.o.description);
        rules.set(key, { obj, hosts, policies: new Map([...frags].map(([h, f]) => [h, f.policy])) });
        const ignored = [...new Set([...frags.values()].flatMap((f) => f.ignored))];
        if (ignored.length) this.o.events.report(ref, ignored.map((field) => ({ field, message: 'not enforced by sockmesh' })), 'SockmeshIgnoredFields', `sockmesh applies this ${ref.kind}'s policy but not`);
      } catch (e) {
        this.o.events.report(ref, problemsOf(e), 'SockmeshInvalidPolicy');
      }
    }
    this.o.retranslate([...affected, ...(rules.get(key)?.hosts ?? [])]);
    this.o.changed();
  }
}
