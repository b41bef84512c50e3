// Traffic management end to end (issue 25), on real sockets in private namespaces with curl as the
// client: Istio DestinationRule subsets and VirtualService routes (documents after the config)
// rendered into the governance sidecar's HAProxy, in both capture modes: a 90/10 split between
// subsets lands within 3 points over 2,000 requests and moves to 50/50 under load through the
// runtime API without a failed request; header and prefix matches (with a rewrite) take their
// subset and the default route the rest; fault injection aborts and delays the share it says;
// consistent hashing keeps a user on one endpoint; request and response headers are changed.
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Line, Proc } from '../../src/topology/proc.js';
import { runCli } from '../helpers/cli.js';
import { Mesh, PEER } from '../helpers/mesh.js';
import { privileged, uniqueName } from '../helpers/privileged.js';
import { slow } from '../helpers/slow.js';

const EP = { v1a: '10.0.0.11', v1b: '10.0.0.12', v2: '10.0.0.13' };
const VIP = '10.96.0.20';

function config(version: number, split: [number, number], extraRoute = ''): string {
  return `# version ${version}
services:
  - name: reviews
    addresses: [${VIP}]
    ports: [9080]
    protocol: http
    endpoints:
      - { address: ${EP.v1a}:9080, labels: { app: reviews, version: v1 } }
      - { address: ${EP.v1b}:9080, labels: { app: reviews, version: v1 } }
      - { address: ${EP.v2}:9080, labels: { app: reviews, version: v2 } }
  - { name: ratings, addresses: [10.96.0.21], ports: [9081], endpoints: ['${EP.v1a}'] }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - name: v2
      labels: { version: v2 }
    - name: sticky
      labels: { version: v1 }
      trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: x-user } } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
    - name: jason
      match: [{ headers: { end-user: { exact: jason } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
      headers: { request: { set: { x-route: jason } }, response: { add: { x-mesh-route: jason } } }
    - name: beta
      match: [{ uri: { prefix: /beta/ } }, { uri: { regex: "/b[0-9]+" } }]
      rewrite: { uri: /v2/ }
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: abort
      match: [{ uri: { prefix: /abort } }]
      fault: { abort: { httpStatus: 503, percentage: { value: 50 } } }
      route: [{ destination: { host: reviews, subset: v1 } }]
    - name: ratings
      match: [{ uri: { prefix: /ratings } }]
      route: [{ destination: { host: ratings } }]
    - name: delay
      match: [{ uri: { exact: /delay } }]
      fault: { delay: { fixedDelay: 200ms, percentage: { value: 100 } } }
      route: [{ destination: { host: reviews, subset: v1 } }]
    - name: sticky
      match: [{ uri: { prefix: /sticky } }]
      route: [{ destination: { host: reviews, subset: sticky } }]
${extraRoute}    - name: canary
      route:
        - { destination: { host: reviews, subset: v1 }, weight: ${split[0]} }
        - { destination: { host: reviews, subset: v2 }, weight: ${split[1]} }
      headers: { response: { remove: [x-served-by] } }
`;
}

for (const mode of ['ebpf', 'iptables'] as const) {
  privileged(`traffic routes and subsets (Istio documents), ${mode} capture`, () => {
    const instance = uniqueName('rt');
    let mesh: Mesh;
    let sidecar: Proc;
    let cfgPath: string;

    beforeAll(async () => {
      mesh = await Mesh.create(instance, Object.values(EP), [], { sidecar: false });
      const servers = Object.entries(EP).map(([name, addr]) => mesh.topo.spawnNode(PEER, ['http-serve', '--host', addr, '--port', '9080', '--name', name], { netns: 'remote', cgroup: 'outside', label: `endpoint ${name}` }));
      // Another service, TCP in the config, on another port: a route to it speaks HTTP to its port.
      servers.push(mesh.topo.spawnNode(PEER, ['http-serve', '--host', EP.v1a, '--port', '9081', '--name', 'ratings'], { netns: 'remote', cgroup: 'outside', label: 'endpoint ratings' }));
      await Promise.all(servers.map((p) => p.waitFor((l) => l.event === 'ready', slow(30_000))));
      ({ sidecar, cfgPath } = await mesh.governed(instance, config(1, [90, 10]), mode));
    });

    afterAll(async () => {
      await runCli(['down', '--instance', instance]);
      await mesh?.close();
    });

    /** curl from the pod's app: one keep-alive connection for every URL; each body line, then {code, time}. */
    async function curl(urls: string[], headers: string[] = []): Promise<Array<{ code: number; time: number; body?: Line; served?: string }>> {
      const p = mesh.topo.spawn('curl', ['-s', '-m', '30', '-D', '-', ...headers.flatMap((h) => ['-H', h]), '-w', '\\n{"code":%{http_code},"time":%{time_total}}\\n', ...urls], { cgroup: 'mesh', label: 'curl' });
      expect(await p.exited).toBe(0);
      const out: Array<{ code: number; time: number; body?: Line; served?: string }> = [];
      let body: Line | undefined;
      let served: string | undefined;
      for (const l of p.lines) {
        const t = typeof l.text === 'string' ? l.text : '';
        if (/^x-served-by:/i.test(t)) served = t.split(':')[1].trim();
        else if (typeof l.code === 'number') {
          out.push({ code: l.code, time: Number(l.time), ...(body ? { body } : {}), ...(served ? { served } : {}) });
          body = undefined;
          served = undefined;
        } else if (typeof l.server === 'string') body = l;
      }
      return out;
    }
    const count = (rs: Array<{ body?: Line }>) => rs.reduce<Record<string, number>>((m, r) => {
      const s = String(r.body?.server ?? 'none');
      m[s] = (m[s] ?? 0) + 1;
      return m;
    }, {});

    it('a 90/10 split between subsets v1 and v2 lands within 3 points over 2,000 requests; the access log names route and subset', async () => {
      const before = sidecar.lines.length;
      const rs = await curl([`http://${VIP}:9080/r[1-2000]`]);
      expect(rs).toHaveLength(2000);
      expect(rs.every((r) => r.code === 200)).toBe(true);
      const c = count(rs);
      const v1 = (c.v1a ?? 0) + (c.v1b ?? 0);
      expect(Math.abs(v1 / 2000 - 0.9)).toBeLessThanOrEqual(0.03);
      expect(c.v2 ?? 0).toBe(2000 - v1);
      // v1's two endpoints share its part; the canary route removes x-served-by from responses.
      expect(Math.min(c.v1a, c.v1b)).toBeGreaterThan(v1 * 0.4);
      expect(rs.some((r) => r.served)).toBe(false);
      await sidecar.waitFor(() => sidecar.lines.slice(before).filter((l) => l.event === 'access' && l.route === 'canary').length >= 2000, slow(10_000));
      const logged = sidecar.lines.slice(before).filter((l) => l.event === 'access' && l.route === 'canary');
      expect(logged.filter((l) => l.subset === 'v2')).toHaveLength(c.v2 ?? 0);
      expect(logged.filter((l) => l.subset === 'v1')).toHaveLength(v1);
    });

    it('a header match and a prefix or regex match (with a rewrite) take their subset; the default route the rest', async () => {
      const jason = await curl(Array.from({ length: 20 }, (_, i) => `http://${VIP}:9080/j${i}`), ['end-user: jason']);
      expect(count(jason)).toEqual({ v2: 20 });
      expect(jason[0].body?.headers).toMatchObject({ 'x-route': 'jason' });
      const maria = await curl(Array.from({ length: 20 }, (_, i) => `http://${VIP}:9080/j${i}`), ['end-user: maria']);
      expect(maria.every((r) => r.body?.headers && !('x-route' in (r.body.headers as object)))).toBe(true);
      const beta = await curl([`http://${VIP}:9080/beta/page?x=1`, `http://${VIP}:9080/b42`, `http://${VIP}:9080/b42x`]);
      expect(beta.slice(0, 2).map((r) => [r.body?.server, r.body?.path])).toEqual([['v2', '/v2/page?x=1'], ['v2', '/v2/']]);
      // /b42x is no full match of the regex: the default route takes it, path unchanged.
      expect(beta[2].body?.path).toBe('/b42x');
      // A header value with a comma is one value (not a list): "jason, x" is not jason (the jason
      // route would have set x-route on the request).
      const comma = await curl([`http://${VIP}:9080/c1`, `http://${VIP}:9080/c2`], ['end-user: jason, x']);
      expect(comma.map((r) => (r.body?.headers as Record<string, string> | undefined)?.['x-route'] ?? null)).toEqual([null, null]);
      // A route to another service goes to that service's port (9081), not the one the request came to.
      const other = await curl([`http://${VIP}:9080/ratings/1`, `http://${VIP}:9080/ratings/2`]);
      expect(other.map((r) => [r.code, r.body?.server])).toEqual([[200, 'ratings'], [200, 'ratings']]);
    });

    it('fault injection: a 50 % abort with 503 and a 100 % 200 ms delay, measured', async () => {
      const before = sidecar.lines.length;
      const ab = await curl([`http://${VIP}:9080/abort[1-2000]`]);
      const aborted = ab.filter((r) => r.code === 503).length;
      // The sidecar's own answers are logged as the service's requests (counted in its metrics).
      await sidecar.waitFor(() => sidecar.lines.slice(before).filter((l) => l.event === 'access' && l.route === 'abort').length >= 2000, slow(10_000));
      const logged = sidecar.lines.slice(before).filter((l) => l.event === 'access' && l.route === 'abort');
      expect(logged.filter((l) => l.status === 503 && l.service === 'reviews' && l.method === 'GET')).toHaveLength(aborted);
      expect(ab.filter((r) => r.code !== 503).every((r) => r.code === 200 && r.body?.server?.toString().startsWith('v1'))).toBe(true);
      expect(Math.abs(aborted / 2000 - 0.5)).toBeLessThanOrEqual(0.05);
      const plain = await curl(Array.from({ length: 10 }, () => `http://${VIP}:9080/nodelay`));
      const delayed = await curl(Array.from({ length: 10 }, () => `http://${VIP}:9080/delay`));
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      expect(delayed.every((r) => r.code === 200)).toBe(true);
      const added = (median(delayed.map((r) => r.time)) - median(plain.map((r) => r.time))) * 1000;
      expect(Math.abs(added - 200)).toBeLessThanOrEqual(20);
    });

    it('consistent hashing on a header keeps each user on one endpoint of the subset', async () => {
      const seen: Record<string, Set<string>> = {};
      for (const user of ['ann', 'bob', 'cyd', 'dan', 'eve', 'fay', 'gus', 'hal', 'ivy', 'jon', 'kim', 'lee']) {
        const rs = await curl(Array.from({ length: 8 }, (_, i) => `http://${VIP}:9080/sticky/${i}`), [`x-user: ${user}`]);
        seen[user] = new Set(rs.map((r) => String(r.body?.server)));
      }
      for (const s of Object.values(seen)) expect(s.size).toBe(1);
      // Both endpoints of the subset take some users.
      expect(new Set(Object.values(seen).map((s) => [...s][0]))).toEqual(new Set(['v1a', 'v1b']));
    });

    it('moving the split to 50/50 under load: the runtime API, no reload, zero failed requests', async () => {
      const load = mesh.topo.spawnNode(PEER, ['http-load', '--host', VIP, '--port', '9080', '--count', '0', '--concurrency', '4'], { cgroup: 'mesh', label: 'load' });
      await load.waitFor((l) => l.event === 'response', slow(10_000));
      writeFileSync(cfgPath, config(2, [50, 50]));
      const applied = await sidecar.waitFor((l) => l.event === 'policy' && l.version === 2, slow(20_000));
      expect(applied).toMatchObject({ via: 'runtime' });
      await new Promise((r) => setTimeout(r, 500));
      load.child.stdin!.end();
      const done = await load.waitFor((l) => l.event === 'done', slow(30_000));
      expect(done.requests).toBeGreaterThan(50);
      expect(done.failures).toBe(0);
      const rs = await curl([`http://${VIP}:9080/r[1-2000]`]);
      const c = count(rs);
      expect(Math.abs((c.v2 ?? 0) / 2000 - 0.5)).toBeLessThanOrEqual(0.03);
    });

    it('a new route under load: a checked seamless reload, zero failed requests, and the route serves', async () => {
      const load = mesh.topo.spawnNode(PEER, ['http-load', '--host', VIP, '--port', '9080', '--count', '0', '--concurrency', '4'], { cgroup: 'mesh', label: 'load' });
      await load.waitFor((l) => l.event === 'response', slow(10_000));
      writeFileSync(cfgPath, config(3, [50, 50], `    - name: only-a
      match: [{ uri: { prefix: /only-a } }]
      route: [{ destination: { host: reviews, subset: v1 } }]
`));
      const applied = await sidecar.waitFor((l) => l.event === 'policy' && l.version === 3, slow(20_000));
      expect(applied).toMatchObject({ via: 'reload' });
      await sidecar.waitFor((l) => l.event === 'policy-applied' && l.version === 3, slow(20_000));
      await new Promise((r) => setTimeout(r, 500));
      load.child.stdin!.end();
      const done = await load.waitFor((l) => l.event === 'done', slow(30_000));
      expect(done.requests).toBeGreaterThan(50);
      expect(done.failures, JSON.stringify([done, load.lines.filter((l) => l.event === 'response' && l.status !== 200).slice(0, 3)])).toBe(0);
      const rs = await curl(Array.from({ length: 20 }, (_, i) => `http://${VIP}:9080/only-a/${i}`));
      expect(rs.every((r) => String(r.body?.server).startsWith('v1'))).toBe(true);
    });
  });
}
