// Traffic management in the config (issue 25): DestinationRule / VirtualService documents after a
// config file, with the Kubernetes source's semantics, and the service policy's routes, subsets and
// consistentHash as sockmesh checks them (errors name the field and say what to change).
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';

const SVC = `services:
  - name: reviews
    addresses: [10.96.0.20]
    ports: [9080]
    protocol: http
    endpoints:
      - { address: 10.1.0.11:9080, labels: { version: v1 } }
      - { address: 10.1.0.12:9080, labels: { version: v2 } }
  - { name: ratings, addresses: [10.96.0.21], ports: [9080], protocol: http, endpoints: [10.1.0.21:9080] }
  - { name: db, addresses: [10.96.0.22], ports: [5432] }
`;
const DR = `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: { loadBalancer: { simple: RANDOM }, tls: { mode: ISTIO_MUTUAL } }
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 }, trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true } } } }]
`;
const vs = (http: string) => `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
${http}`;
const errors = (text: string): string => {
  try {
    parseConfigText(text, 't.yaml');
    return '';
  } catch (e) {
    return (e as Error).message;
  }
};

describe('DestinationRule and VirtualService documents in a config file', () => {
  it('give the service they name its subsets and routes, as the Kubernetes source would; what they carry that sockmesh does not enforce is a notice', () => {
    const cfg = parseConfigText(SVC + DR + vs(`    - match: [{ uri: { prefix: /v2 } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - route: [{ destination: { host: reviews, subset: v1 }, weight: 75 }, { destination: { host: ratings }, weight: 25 }]
      retries: { attempts: 2, retryOn: 5xx }
`), 't.yaml');
    const p = cfg.services[0].policy!;
    expect(p.loadBalancer).toBe('RANDOM');
    expect(p.subsets).toEqual([{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' }, trafficPolicy: { consistentHash: { useSourceIp: true } } }]);
    expect(p.routes?.map((r) => r.route)).toEqual([[{ host: 'reviews', subset: 'v2', weight: 100 }], [{ host: 'reviews', subset: 'v1', weight: 75 }, { host: 'ratings', weight: 25 }]]);
    expect(p.routes?.[1].retries).toEqual({ attempts: 2, retryOn: ['5xx'] });
    expect(cfg.notices).toEqual(['document 2 spec.trafficPolicy.tls: not enforced by sockmesh']);
    expect(cfg.services[1].policy).toBeUndefined();
  });

  it('weights are relative (Istio: weight / their sum); a fault without a percentage injects nothing; timeout 0s is no timeout', () => {
    const cfg = parseConfigText(SVC + DR + vs(`    - fault: { abort: { httpStatus: 500 } }
      timeout: 0s
      route: [{ destination: { host: reviews, subset: v1 }, weight: 1 }, { destination: { host: reviews, subset: v2 }, weight: 3 }]
`), 't.yaml');
    const r = cfg.services[0].policy!.routes![0];
    expect(r.route.map((d) => d.weight)).toEqual([1, 3]);
    expect(r.fault).toEqual({ abort: { httpStatus: 500, percent: 0 } });
    expect(r.timeoutMs).toBeUndefined();
  });

  it('a VirtualService naming two services reads for each: a route to the first is a route elsewhere for the second', () => {
    const cfg = parseConfigText(SVC + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: both }
spec:
  hosts: [reviews, ratings]
  http: [{ route: [{ destination: { host: reviews } }], timeout: 2s }]
`, 't.yaml');
    expect(cfg.services[0].policy).toEqual({ timeoutMs: 2000 });
    expect(cfg.services[1].policy?.routes?.[0]).toMatchObject({ route: [{ host: 'reviews', weight: 100 }], timeoutMs: 2000 });
  });

  it('one catch-all route to the service itself is the route-less policy', () => {
    const cfg = parseConfigText(SVC + vs(`    - route: [{ destination: { host: reviews } }]
      timeout: 1500ms
`), 't.yaml');
    expect(cfg.services[0].policy).toEqual({ timeoutMs: 1500 });
  });

  it('refuses what it cannot route, naming the field: weights that do not add up, unknown hosts and subsets, a TCP service, RE2-foreign regexes', () => {
    expect(errors(SVC + DR + vs(`    - route: [{ destination: { host: reviews, subset: v1 } }, { destination: { host: reviews, subset: v2 } }]
`))).toMatch(/document 3 \(as services\[0\]\.policy\)\.routes\[0\]\.route: give the destinations weights: with several, an unset weight is 0/);
    expect(errors(SVC + vs(`    - route: [{ destination: { host: ratings, port: { number: 9090 } } }]
`))).toMatch(/services\[0\]\.policy\.routes\[0\]\.route\[0\]\.destination\.port\.number: service "ratings" has no port 9090 \(its ports: 9080\)/);
    expect(errors(SVC + vs(`    - match: [{ uri: { regex: "/[^]x" } }]
      route: [{ destination: { host: reviews } }]
`))).toMatch(/uses \[\^\], \[\] or \\u, which HAProxy's regexes \(PCRE2\) do not take/);
    expect(errors(SVC + DR + vs(`    - route: [{ destination: { host: reviews, subset: v3 } }]
`))).toMatch(/services\[0\]\.policy\.routes\[0\]\.route\[0\]\.destination\.subset: service "reviews" has no subset "v3" \(its DestinationRule defines v1, v2\)/);
    expect(errors(SVC + vs(`    - match: [{ uri: { regex: "/(?=admin)" } }]
      route: [{ destination: { host: reviews } }]
`))).toMatch(/uri\.regex: "\/\(\?=admin\)" uses look-around or a back-reference, which Istio's regexes \(RE2\) do not have/);
    expect(errors(SVC + vs(`    - match: [{ uri: { regex: "/[a" } }]
      route: [{ destination: { host: reviews } }]
`))).toMatch(/uri\.regex: is not a valid regular expression/);
    expect(errors(`${SVC}  - name: x
    ports: [1]
    policy: { routes: [{ route: [{ destination: { host: nowhere } }] }] }
`)).toMatch(/services\[3\]\.policy\.routes: needs protocol: http, http2 or grpc/);
    expect(errors(`${SVC}  - name: x
    ports: [1]
    protocol: http
    policy: { routes: [{ route: [{ destination: { host: nowhere } }] }] }
`)).toMatch(/services\[3\]\.policy\.routes\[0\]\.route\[0\]\.destination\.host: names no service of this config: "nowhere"/);
    expect(errors(SVC + vs(`    - fault: { abort: { grpcStatus: UNAVAILABLE } }
      route: [{ destination: { host: reviews } }]
`))).toMatch(/fault\.abort\.httpStatus: is required/);
  });

  it('routes a VirtualService cannot have enforced are left out and said', () => {
    const cfg = parseConfigText(SVC + vs(`    - match: [{ queryParams: { a: { exact: b } } }]
      route: [{ destination: { host: reviews } }]
    - redirect: { uri: /x }
    - route: [{ destination: { host: reviews } }]
      mirror: { host: ratings }
`), 't.yaml');
    expect(cfg.notices).toEqual([
      'document 2 spec.http[0].match[0] (queryParams: the block is left out): not enforced by sockmesh',
      'document 2 spec.http[0] (no match block sockmesh can check: the route is left out): not enforced by sockmesh',
      'document 2 spec.http[1] (redirect (sockmesh routes to destinations only): the route is left out): not enforced by sockmesh',
      'document 2 spec.http[2].mirror: not enforced by sockmesh',
    ]);
  });
});

describe('tracing', () => {
  it('takes an OTLP/HTTP collector and Istio\'s sampling percentage (default 1 %)', () => {
    expect(parseConfigText('services: []\ntracing: { collector: "http://otel:4318" }\n', 't').tracing).toEqual({ collector: 'http://otel:4318/v1/traces', randomSamplingPercentage: 1, maxQueueSize: 2048 });
    expect(errors('services: []\ntracing: { collector: "otel:4318", randomSamplingPercentage: 101 }\n')).toMatch(/tracing\.collector: must be an http:\/\/ or https:\/\/ URL[\s\S]*tracing\.randomSamplingPercentage: must be a number from 0 to 100/);
  });
});
