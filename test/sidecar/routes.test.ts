// Routes in HAProxy's configuration (issue 25): what the outbound frontend renders for a service
// with routes, HAProxy's own check of it (quotes, regexes, header values with %, ', $), and which
// changes go through the runtime API (endpoints and their labels, weights) rather than a reload.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { renderHaproxy } from '../../src/sidecar/haproxy.js';
import { TRAFFIC_LUA } from '../../src/sidecar/routes.js';
import { renderedServers, runtimePlan } from '../../src/sidecar/runtime.js';

const config = (split: [number, number], v2 = '10.1.0.12', extra = '') => parseConfigText(`services:
  - name: reviews
    addresses: [10.96.0.20]
    ports: [9080]
    protocol: http
    endpoints:
      - { address: 10.1.0.11:9080, labels: { version: v1 } }
      - { address: ${v2}:9080, labels: { version: v2 } }
    policy:
      subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
      routes:
        - name: odd
          match: [{ headers: { x-q: { exact: "it's $HOME 100%" } }, method: { regex: "GET|HEAD" } }, { uri: { regex: "/a b/[0-9]+" }, port: 9080 }]
          headers: { request: { set: { x-v: "50% 'off'" }, add: { x-empty: "" } } }
          fault: { delay: { fixedDelay: 5ms, percentage: { value: 0.5 } } }
          route: [{ destination: { host: reviews, subset: v2 } }]
        - route: [{ destination: { host: reviews, subset: v1 }, weight: ${split[0]} }, { destination: { host: reviews, subset: v2 }, weight: ${split[1]} }]
  - { name: grpc, addresses: [10.96.0.30], ports: [50051], protocol: grpc, endpoints: [10.1.0.31:50051] }
${extra}`, 't.yaml');

function haproxyCheck(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-routes-'));
  try {
    const lua = join(dir, 'traffic.lua');
    writeFileSync(lua, TRAFFIC_LUA);
    writeFileSync(join(dir, 'haproxy.cfg'), text.replace(/lua-load \S+/, `lua-load ${lua}`));
    return execFileSync('haproxy', ['-c', '-f', join(dir, 'haproxy.cfg')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('routes in HAProxy', () => {
  const cfg = config([90, 10]);
  const text = renderHaproxy(cfg, { sidecar: cfg.sidecar, runDir: '/run/x', version: '1', dropPrivileges: false, trafficLua: '/run/x/traffic.lua' });

  it('switches the routed service (and the gRPC one, as h2) to HTTP in the frontend; first match wins, then faults, headers and a weighted pick', () => {
    expect(text).toContain('  tcp-request content switch-mode http if { dst_port 9080 } { dst 10.96.0.20 }');
    expect(text).toContain('  tcp-request content switch-mode http proto h2 if { dst_port 50051 } { dst 10.96.0.30 }');
    // A header is matched on its whole value (req.fhdr: a comma in it is no list separator).
    expect(text).toContain(`{ method -m reg '^(?:GET|HEAD)$' } { req.fhdr(x-q) -m str 'it'\\''s $HOME 100%' }`);
    expect(text).toContain(`  http-request set-header x-v '50%% '\\''off'\\''' if { var(txn.sm_rt) -m beg 0.0. }`);
    expect(text).toContain('  http-request lua.sm_delay 5 if { var(txn.sm_rt) -m beg 0.0. } { rand(1000000) -m int lt 5000 }');
    expect(text).toContain('  set-var proc.sm_w_0_1_0 int(900)'); // per mille of the route's weights
    // Routes that send to the same subset share its backend: one health check, one connection limit per endpoint.
    expect(text.match(/^backend out_reviews:\d+$/gm)).toEqual(['backend out_reviews:0', 'backend out_reviews:1']);
    expect(text).toContain('  http-request return status 404 if { var(txn.sm_svc) -m str reviews } !{ var(txn.sm_rt) -m found }');
    expect(text).toMatch(/backend out_reviews:0\n {2}mode http\n {2}balance roundrobin\n {2}http-request set-var\(txn\.sm_subset\) str\(v2\)\n {2}server ep-10\.1\.0\.12-9080 /);
    expect(text).toMatch(/backend out_grpc\n[\s\S]*?server ep-10\.1\.0\.31-50051 10\.1\.0\.31:50051 weight 1 proto h2\n/);
    expect(text).not.toContain('use_backend out_reviews if');
  });

  it('is a configuration HAProxy accepts (an empty header value too)', () => {
    expect(text).toContain(`  http-request add-header x-empty '%[str()]' if { var(txn.sm_rt) -m beg 0.0. }`);
    expect(haproxyCheck(text)).toMatch(/Configuration file is valid/);
  });

  it('a new split, or an endpoint moving between subsets, goes through the runtime API; a new route is a reload', () => {
    const present = renderedServers(cfg);
    expect(runtimePlan(cfg, config([50, 50]), present)).toEqual(['experimental-mode on; set var proc.sm_w_0_1_0 int(500)']);
    // Relative weights: 1:3 is 250 per mille.
    expect(runtimePlan(cfg, config([1, 3]), present)).toEqual(['experimental-mode on; set var proc.sm_w_0_1_0 int(250)']);
    const moved = runtimePlan(cfg, config([90, 10], '10.1.0.13'), present);
    expect(moved).toEqual(['add server out_reviews:0/ep-10.1.0.13-9080 10.1.0.13:9080 weight 1', 'enable server out_reviews:0/ep-10.1.0.13-9080', 'set server out_reviews:0/ep-10.1.0.12-9080 state maint']);
    expect(runtimePlan(cfg, config([90, 10], '10.1.0.12', '  - { name: other, addresses: [10.96.0.40], ports: [80], protocol: http }\n'), present)).toBeUndefined();
  });
});
