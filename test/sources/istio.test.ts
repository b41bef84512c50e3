// Istio's DestinationRule / VirtualService -> a service's policy block, and the Service fields that
// go with it (HTTP by Istio's protocol selection, endpoints at their target ports, the rate-limit
// annotation). Pure functions; the watch side is in kubernetes-source.test.ts.
import { describe, expect, it } from 'vitest';
import { destinationRuleObject, serviceObject, sliceObject, virtualServiceObject } from '../../src/bench/k8s-objects.js';
import { validateService } from '../../src/config/validate/index.js';
import {
  destinationRulePolicy, hostService, hostsOf, istioDuration, pickFor, trimIstio, virtualServicePolicy,
  type KDestinationRule, type KVirtualService,
} from '../../src/sources/kubernetes/istio.js';
import { rateLimitAnnotation } from '../../src/sources/kubernetes/annotations.js';
import { isHttpPort, protocolOf, translateService, trimService, trimSlice, type KEndpointSlice, type KService } from '../../src/sources/kubernetes/translate.js';

const dr = (o: Parameters<typeof destinationRuleObject>[0]) => trimIstio(destinationRuleObject(o) as unknown as KDestinationRule);
const vs = (o: Parameters<typeof virtualServiceObject>[0]) => trimIstio(virtualServiceObject(o) as unknown as KVirtualService);

describe('Istio hosts', () => {
  it('a short name is in the object\'s namespace; qualified names name their own; wildcards and external hosts name no Service', () => {
    expect(hostService('ratings', 'shop')).toBe('ratings.shop');
    expect(hostService('ratings.bookinfo.svc.cluster.local', 'shop')).toBe('ratings.bookinfo');
    expect(hostService('ratings.bookinfo.svc', 'shop')).toBe('ratings.bookinfo');
    expect(hostService('*.bookinfo.svc.cluster.local', 'shop')).toBeUndefined();
    expect(hostService('api.example.com', 'shop')).toBeUndefined();
    expect(hostService('', 'shop')).toBeUndefined();
    expect(hostService(7, 'shop')).toBeUndefined();
    expect(hostsOf('virtualservices', vs({ name: 'v', namespace: 'shop', hosts: ['ratings', 'ratings.shop.svc.cluster.local', 'reviews.other.svc'], http: [] }))).toEqual(['ratings.shop', 'reviews.other']);
    expect(hostsOf('destinationrules', dr({ name: 'd', namespace: 'shop', host: 'ratings' }))).toEqual(['ratings.shop']);
  });

  it('of several objects for one Service: the one in its namespace, then the oldest', () => {
    const other = dr({ name: 'a', namespace: 'other', host: 'ratings.shop.svc.cluster.local', created: '2026-01-01T00:00:00Z' });
    const newer = dr({ name: 'b', namespace: 'shop', host: 'ratings', created: '2026-06-01T00:00:00Z' });
    const older = dr({ name: 'c', namespace: 'shop', host: 'ratings', created: '2026-03-01T00:00:00Z' });
    expect(pickFor('ratings.shop', [other, newer, older])?.metadata.name).toBe('c');
    expect(pickFor('ratings.shop', [other, newer])?.metadata.name).toBe('b');
    expect(pickFor('ratings.shop', [other])?.metadata.name).toBe('a');
    expect(pickFor('ratings.shop', [])).toBeUndefined();
  });
});

describe('Istio durations', () => {
  it('Go\'s forms as the CRDs take them, in ms; anything else passed on for validation to name', () => {
    expect(istioDuration('10s')).toBe('10000ms');
    expect(istioDuration('1m30s')).toBe('90000ms');
    expect(istioDuration('0.5s')).toBe('500ms');
    expect(istioDuration('250ms')).toBe('250ms');
    expect(istioDuration('1h')).toBe('3600000ms');
    expect(istioDuration('1500us')).toBe('2ms');
    expect(istioDuration('soon')).toBe('soon');
    expect(istioDuration(5)).toBe(5);
  });
});

describe('DestinationRule -> policy', () => {
  it('maps loadBalancer.simple, connectionPool.tcp.maxConnections and outlierDetection; lists what it does not enforce', () => {
    const f = destinationRulePolicy(dr({
      name: 'r', namespace: 'shop', host: 'ratings',
      trafficPolicy: {
        loadBalancer: { simple: 'LEAST_CONN' },
        connectionPool: { tcp: { maxConnections: 100, connectTimeout: '1s' }, http: { http1MaxPendingRequests: 10 } },
        outlierDetection: { consecutive5xxErrors: 3, interval: '1m30s', baseEjectionTime: '0.5s', maxEjectionPercent: 50 },
        tls: { mode: 'ISTIO_MUTUAL' },
      },
      subsets: [{ name: 'v1', labels: { version: 'v1' } }],
    }));
    expect(f.policy).toEqual({
      loadBalancer: 'LEAST_REQUEST', connectionPool: { tcp: { maxConnections: 100 } },
      outlierDetection: { consecutive5xxErrors: 3, interval: '90000ms', baseEjectionTime: '500ms' },
      subsets: [{ name: 'v1', labels: { version: 'v1' } }],
    });
    expect(f.ignored.sort()).toEqual([
      'spec.trafficPolicy.connectionPool.http', 'spec.trafficPolicy.connectionPool.tcp.connectTimeout',
      'spec.trafficPolicy.outlierDetection.maxEjectionPercent', 'spec.trafficPolicy.tls',
    ]);
    // What the config validation makes of it: the same policy a config file would give.
    expect(validateService({ name: 'x', addresses: [], ports: [1], policy: f.policy }, '', 't').policy).toEqual({
      loadBalancer: 'LEAST_REQUEST', connectionPool: { tcp: { maxConnections: 100 } },
      outlierDetection: { consecutive5xxErrors: 3, intervalMs: 90_000, baseEjectionTimeMs: 500 }, subsets: [{ name: 'v1', labels: { version: 'v1' } }],
    });
  });

  it('consecutive5xxErrors 0 turns ejection off; UNSPECIFIED is no balancer; PASSTHROUGH is named for validation to refuse', () => {
    expect(destinationRulePolicy(dr({ name: 'r', host: 'x', trafficPolicy: { outlierDetection: { consecutive5xxErrors: 0 }, loadBalancer: { simple: 'UNSPECIFIED' } } })).policy).toEqual({});
    const pass = destinationRulePolicy(dr({ name: 'r', host: 'x', trafficPolicy: { loadBalancer: { simple: 'PASSTHROUGH' } } })).policy;
    expect(() => validateService({ name: 'x', addresses: [], ports: [1], policy: pass }, '', 't')).toThrow(/policy\.loadBalancer: must be one of ROUND_ROBIN, LEAST_REQUEST, RANDOM, got string "PASSTHROUGH"/);
    expect(destinationRulePolicy(dr({ name: 'r', host: 'x' }))).toEqual({ policy: {}, ignored: [] });
  });
});

describe('VirtualService -> policy', () => {
  it('one catch-all route to the Service itself is the route-less policy (timeout, retries); unknown retryOn conditions are listed', () => {
    const f = virtualServicePolicy(vs({
      name: 'v', namespace: 'shop', hosts: ['ratings'],
      http: [{ route: [{ destination: { host: 'ratings' } }], timeout: '2s', retries: { attempts: 3, perTryTimeout: '500ms', retryOn: 'connect-failure,5xx,cancelled' } }],
    }));
    expect(f.policy).toEqual({ timeout: '2000ms', retries: { attempts: 3, perTryTimeout: '500ms', retryOn: 'connect-failure,5xx' } });
    expect(f.ignored).toEqual(['spec.http[0].retries.retryOn: cancelled']);
  });

  it('routes in order: matches, weighted destinations across hosts and subsets, faults, headers, rewrite; what cannot be enforced is left out and named', () => {
    const f = virtualServicePolicy(vs({
      name: 'v', namespace: 'shop', hosts: ['ratings'],
      http: [
        { name: 'qa', match: [{ headers: { end: { exact: 'qa' } } }, { uri: { prefix: '/a' }, ignoreUriCase: true }], route: [{ destination: { host: 'ratings', subset: 'v2' } }], rewrite: { uri: '/', authority: 'x' } },
        { redirect: { uri: '/elsewhere' } },
        { route: [{ destination: { host: 'api.example.com' } }] },
        { fault: { abort: { httpStatus: 503, percentage: { value: 10 } }, delay: { fixedDelay: '1s', percent: 5 } }, route: [{ destination: { host: 'ratings', subset: 'v1' } }] },
        {
          route: [{ destination: { host: 'ratings', subset: 'v1' }, weight: 90 }, { destination: { host: 'ratings-canary.shop.svc.cluster.local' }, weight: 10 }],
          timeout: '2s', headers: { request: { set: { a: 'b' } } }, mirror: { host: 'shadow' },
        },
      ],
    }));
    expect(f.policy).toEqual({
      routes: [
        { name: 'qa', match: [{ headers: { end: { exact: 'qa' } } }], route: [{ destination: { host: 'ratings.shop', subset: 'v2' } }], rewrite: { uri: '/' } },
        { fault: { abort: { httpStatus: 503, percentage: { value: 10 } }, delay: { fixedDelay: '1000ms', percentage: { value: 5 } } }, route: [{ destination: { host: 'ratings.shop', subset: 'v1' } }] },
        { route: [{ destination: { host: 'ratings.shop', subset: 'v1' }, weight: 90 }, { destination: { host: 'ratings-canary.shop' }, weight: 10 }], timeout: '2000ms', headers: { request: { set: { a: 'b' } } } },
      ],
    });
    expect(f.ignored).toEqual([
      'spec.http[0].match[1] (ignoreUriCase: the block is left out)', 'spec.http[0].rewrite.authority',
      'spec.http[1] (redirect (sockmesh routes to destinations only): the route is left out)',
      'spec.http[2] (route[0].destination.host "api.example.com" is not a Service sockmesh knows: the route is left out)',
      'spec.http[4].mirror',
    ]);
    // Validated as a service's policy block: Istio's shapes in, the model out.
    const p = validateService({ name: 'ratings.shop', addresses: [], ports: [1], protocol: 'http', policy: f.policy }, '', 't').policy!;
    expect(p.routes?.map((r) => [r.name, r.route.map((d) => `${d.host}/${d.subset ?? '-'}:${d.weight}`)])).toEqual([
      ['qa', ['ratings.shop/v2:100']], ['route-1', ['ratings.shop/v1:100']], ['route-2', ['ratings.shop/v1:90', 'ratings-canary.shop/-:10']],
    ]);
    expect(p.routes?.[1].fault).toEqual({ abort: { httpStatus: 503, percent: 10 }, delay: { fixedDelayMs: 1000, percent: 5 } });
  });
});

describe('Services with governance', () => {
  const svc = (o: Partial<Parameters<typeof serviceObject>[0]> = {}) => trimService(serviceObject({ name: 'ratings', namespace: 'shop', clusterIP: '10.96.0.30', ports: [9080], ...o }) as unknown as KService);
  const slices = (port = 9080): KEndpointSlice[] => [trimSlice(sliceObject({ name: 'r-1', namespace: 'shop', service: 'ratings', addresses: ['10.244.1.11', '10.244.2.12'], port }) as unknown as KEndpointSlice)];

  it('HTTP ports by Istio\'s protocol selection: appProtocol, else the name', () => {
    expect(isHttpPort({ name: 'http' })).toBe(true);
    expect(isHttpPort({ name: 'http-web' })).toBe(true);
    expect(isHttpPort({ name: 'HTTP-web' })).toBe(true);
    expect(isHttpPort({ name: 'http2-web' })).toBe(false);
    expect(isHttpPort({ name: 'grpc' })).toBe(false);
    expect(isHttpPort({ name: 'web', appProtocol: 'http' })).toBe(true);
    expect(isHttpPort({ name: 'http', appProtocol: 'kubernetes.io/h2c' })).toBe(false);
  });

  it('an HTTP Service is governed: protocol http, its ready endpoints for the sidecar to balance', () => {
    expect(translateService(svc({ http: true }), () => [], () => slices())).toEqual({
      kind: 'ok',
      value: { name: 'ratings.shop', addresses: ['10.96.0.30'], ports: [9080], redirect: true, splice: 'auto', protocol: 'http', endpoints: ['10.244.1.11', '10.244.2.12'] },
    });
    // Target port other than the port: address:target.
    expect(translateService(svc({ http: true, ports: [80], targetPort: 9080 }), () => [], () => slices()))
      .toMatchObject({ value: { ports: [80], endpoints: ['10.244.1.11:9080', '10.244.2.12:9080'] } });
  });

  it('with subsets, each endpoint carries its pod\'s labels (the slice\'s targetRef); a TCP Service drops routes and subsets', () => {
    const sl = [trimSlice(sliceObject({ name: 'r-1', namespace: 'shop', service: 'ratings', addresses: ['10.244.1.11', '10.244.2.12'], port: 9080, pods: ['r-a', 'r-b'] }) as unknown as KEndpointSlice)];
    const labels: Record<string, Record<string, string>> = { 'shop/r-a': { version: 'v1' }, 'shop/r-b': { version: 'v2' } };
    const policy = { subsets: [{ name: 'v1', labels: { version: 'v1' } }], routes: [{ route: [{ destination: { host: 'ratings.shop', subset: 'v1' } }] }] };
    const http = translateService(svc({ http: true }), () => [], () => sl, () => policy, (ns, pod) => labels[`${ns}/${pod}`]);
    expect(http).toMatchObject({ value: { protocol: 'http', policy, endpoints: [{ address: '10.244.1.11', labels: { version: 'v1' } }, { address: '10.244.2.12', labels: { version: 'v2' } }] } });
    const tcp = translateService(svc(), () => [], () => sl, () => ({ ...policy, loadBalancer: 'RANDOM' }), (ns, pod) => labels[`${ns}/${pod}`]);
    expect(tcp.kind === 'ok' && tcp.value.policy).toEqual({ loadBalancer: 'RANDOM' });
  });

  it('Istio\'s protocol selection: appProtocol, else the port name; http2 and grpc Services are proxied as HTTP/2', () => {
    expect([{ name: 'grpc-api' }, { name: 'http2' }, { name: 'web', appProtocol: 'kubernetes.io/h2c' }, { name: 'x', appProtocol: 'grpc' }, { name: 'tcp-db' }, { name: 'http-web' }].map(protocolOf))
      .toEqual(['grpc', 'http2', 'http2', 'grpc', 'tcp', 'http']);
    const grpcSvc = trimService(serviceObject({ name: 'ratings', namespace: 'shop', clusterIP: '10.96.0.30', ports: [9080] }) as unknown as KService);
    grpcSvc.spec.ports![0].name = 'grpc-api';
    expect(translateService(grpcSvc, () => [], () => slices())).toMatchObject({ value: { protocol: 'grpc', endpoints: ['10.244.1.11', '10.244.2.12'] } });
  });

  it('a TCP Service with policy from Istio\'s objects: the policy and its endpoints; without: as before', () => {
    const policy = { loadBalancer: 'RANDOM', timeout: '1000ms' };
    expect(translateService(svc(), () => [], () => slices(), () => policy))
      .toMatchObject({ value: { policy, endpoints: ['10.244.1.11', '10.244.2.12'] } });
    expect(translateService(svc(), () => [], () => slices())).toEqual({ kind: 'ok', value: { name: 'ratings.shop', addresses: ['10.96.0.30'], ports: [9080], redirect: true, splice: 'auto' } });
    const v = translateService(svc(), () => [], () => slices(), () => policy);
    expect(v.kind === 'ok' && validateService(v.value, 's', 't')).toMatchObject({ policy: { loadBalancer: 'RANDOM', timeoutMs: 1000 }, endpoints: [{ address: '10.244.1.11', port: 0, weight: 1 }, { address: '10.244.2.12', port: 0, weight: 1 }] });
  });

  it('sockmesh.io/rate-limit: the inbound rate limit; malformed, or on a kernel-mode Service, a problem', () => {
    expect(rateLimitAnnotation('100')).toEqual({ value: { requestsPerSecond: 100, burst: 0 } });
    expect(rateLimitAnnotation('100, burst=20')).toEqual({ value: { requestsPerSecond: 100, burst: 20 } });
    expect(translateService(svc({ http: true, annotations: { 'sockmesh.io/rate-limit': '50,burst=5' } }), () => [], () => slices(), () => ({ timeout: '1000ms' })))
      .toMatchObject({ value: { policy: { timeout: '1000ms', rateLimit: { requestsPerSecond: 50, burst: 5 } } } });
    expect(translateService(svc({ annotations: { 'sockmesh.io/rate-limit': 'fast' } }), () => [])).toMatchObject({ kind: 'invalid', problems: [{ field: 'sockmesh.io/rate-limit' }] });
    expect(translateService(svc({ annotations: { 'sockmesh.io/rate-limit': '10', 'sockmesh.io/mode': 'kernel' } }), () => [], () => slices()))
      .toMatchObject({ kind: 'invalid', problems: [{ field: 'sockmesh.io/rate-limit', message: expect.stringMatching(/needs the sidecar/) }] });
  });

  it('a headless Service keeps its addresses and gets no endpoint list (its clients pick); more endpoints than a service holds: none listed, the sidecar passes through', () => {
    const headless = translateService(svc({ clusterIP: 'None', http: true }), () => ['10.244.1.11'], () => slices());
    expect(headless).toMatchObject({ kind: 'ok', value: { addresses: ['10.244.1.11'], protocol: 'http' } });
    expect(headless.kind === 'ok' && headless.value.endpoints).toBeUndefined();
    const many = [trimSlice(sliceObject({ name: 'r-1', namespace: 'shop', service: 'ratings', addresses: Array.from({ length: 70 }, (_, i) => `10.244.3.${i + 1}`), port: 9080 }) as unknown as KEndpointSlice)];
    const big = translateService(svc({ http: true }), () => [], () => many);
    expect(big.kind === 'ok' && big.value.endpoints).toBeUndefined();
  });
});
