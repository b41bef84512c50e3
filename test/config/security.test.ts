// Istio's security semantics as sockmesh reads them: which PeerAuthentication decides a workload's
// mTLS mode (workload > namespace > mesh, UNSET inherits, port level on top), which
// AuthorizationPolicies apply, the documents' validation (fields not enforced reported and never
// making a policy weaker; AUDIT refused), and a kernel-mode service whose server pods are STRICT.
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { authorizationFor, effectiveMtls, matchesPattern } from '../../src/config/mesh-policy.js';
import { peerTargets, speaksMtls } from '../../src/config/workload.js';
import { ConfigError } from '../../src/errors.js';

const pods = `pods:
  - { name: r1, cgroup: r1, netns: r1, addresses: [10.0.0.11], namespace: shop, serviceAccount: ratings, labels: { app: ratings } }
  - { name: f1, cgroup: f1, netns: f1, addresses: [10.0.0.12], namespace: shop, serviceAccount: frontend, labels: { app: front } }
  - { name: x1, cgroup: x1, netns: x1, addresses: [10.0.0.13], namespace: other }
`;
const doc = (kind: string, name: string, ns: string, spec: string) => `---
apiVersion: security.istio.io/v1
kind: ${kind}
metadata: { name: ${name}, namespace: ${ns} }
spec: ${spec}
`;

function issuesOf(yaml: string): string[] {
  try {
    parseConfigText(yaml, 'test.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('config was accepted');
}

describe('PeerAuthentication', () => {
  const cfg = parseConfigText(`services: []\n${pods}${doc('PeerAuthentication', 'mesh', 'istio-system', '{ mtls: { mode: STRICT } }')
  }${doc('PeerAuthentication', 'shop', 'shop', '{ mtls: { mode: PERMISSIVE } }')
  }${doc('PeerAuthentication', 'ratings', 'shop', '{ selector: { matchLabels: { app: ratings } }, mtls: { mode: UNSET }, portLevelMtls: { "9090": { mode: DISABLE } } }')}`, 't.yaml');
  const w = (name: string) => cfg.pods.find((p) => p.name === name)!;

  it('the workload\'s own policy, else its namespace\'s, else the mesh\'s; UNSET inherits; port level on top', () => {
    expect(effectiveMtls(cfg, w('r1'))).toMatchObject({ mode: 'PERMISSIVE', ports: [{ port: 9090, mode: 'DISABLE' }] });
    expect(effectiveMtls(cfg, w('f1'))).toMatchObject({ mode: 'PERMISSIVE', ports: [] });
    expect(effectiveMtls(cfg, w('x1'))).toMatchObject({ mode: 'STRICT', from: ['istio-system/mesh'] });
  });

  it('auto mTLS: a peer is called with mTLS except on its DISABLE ports', () => {
    const targets = peerTargets(cfg, cfg.pods.map((p) => ({ ...p, addresses: p.addresses ?? [] })));
    const r = targets.find((t) => t.addresses.includes('10.0.0.11'))!;
    expect(r.spiffeId).toBe('spiffe://cluster.local/ns/shop/sa/ratings');
    expect(r.dnsId).toBe('ratings.sa.shop.ns.cluster.local');
    expect(speaksMtls(r, 9080)).toBe(true);
    expect(speaksMtls(r, 9090)).toBe(false);
  });
});

describe('AuthorizationPolicy', () => {
  it('applies the namespace\'s policies that select the workload, and the root namespace\'s', () => {
    const cfg = parseConfigText(`services: []\n${pods}${doc('AuthorizationPolicy', 'r', 'shop', '{ selector: { matchLabels: { app: ratings } }, rules: [{}] }')
    }${doc('AuthorizationPolicy', 'all', 'shop', '{}')}${doc('AuthorizationPolicy', 'mesh-deny', 'istio-system', '{ action: DENY, rules: [{ from: [{ source: { namespaces: [evil] } }] }] }')}`, 't.yaml');
    const names = (pod: string) => authorizationFor(cfg, cfg.pods.find((p) => p.name === pod)!).map((p) => p.name).sort();
    expect(names('r1')).toEqual(['all', 'mesh-deny', 'r']);
    expect(names('f1')).toEqual(['all', 'mesh-deny']);
    expect(names('x1')).toEqual(['mesh-deny']);
    // spec: {} is an ALLOW policy without rules: it denies everything, as in Istio.
    expect(cfg.authorizationPolicies.find((p) => p.name === 'all')).toMatchObject({ action: 'ALLOW', rules: [] });
  });

  it('a field sockmesh does not enforce is reported; the ALLOW rule with it is dropped, the DENY rule keeps the rest', () => {
    const cfg = parseConfigText(`services: []\n${doc('AuthorizationPolicy', 'a', 'shop', '{ rules: [{ from: [{ source: { principals: [x] } }], when: [{ key: "request.headers[x]", values: ["1"] }] }] }')
    }${doc('AuthorizationPolicy', 'd', 'shop', '{ action: DENY, rules: [{ from: [{ source: { ipBlocks: [1.2.3.4] } }], to: [{ operation: { ports: ["9080"] } }] }] }')}`, 't.yaml');
    expect(cfg.authorizationPolicies.find((p) => p.name === 'a')!.rules).toEqual([]);
    expect(cfg.authorizationPolicies.find((p) => p.name === 'd')!.rules).toEqual([{ from: [{}], to: [{ ports: [9080] }] }]);
    expect(cfg.notices!.join('\n')).toMatch(/when/);
    expect(cfg.notices!.join('\n')).toMatch(/ipBlocks/);
  });

  it('leaves AUDIT and CUSTOM policies out and says so; refuses an unknown action, naming the document', () => {
    const cfg = parseConfigText(`services: []\n${doc('AuthorizationPolicy', 'a', 'shop', '{ action: AUDIT }')}`, 't.yaml');
    expect(cfg.authorizationPolicies).toEqual([]);
    expect(cfg.notices!.join('\n')).toMatch(/document 2.*spec\.action \(AUDIT\)/);
    expect(issuesOf(`services: []\n${doc('AuthorizationPolicy', 'a', 'shop', '{ action: MAYBE }')}`).join('\n')).toMatch(/document 2.*spec\.action/);
  });

  it('Istio\'s value patterns', () => {
    expect(matchesPattern('cluster.local/ns/shop/*', 'cluster.local/ns/shop/sa/x')).toBe(true);
    expect(matchesPattern('*/sa/x', 'cluster.local/ns/shop/sa/x')).toBe(true);
    expect(matchesPattern('exact', 'exactly')).toBe(false);
  });
});

describe('kernel mode and STRICT', () => {
  it('refuses a kernel-mode service whose endpoints are pods with STRICT ports, naming the service and the policy', () => {
    const text = `services:\n  - { name: ratings, addresses: [10.96.0.30], ports: [9080], mode: kernel, endpoints: ['10.0.0.11:9080'] }\n${pods}${doc('PeerAuthentication', 'strict', 'shop', '{ mtls: { mode: STRICT } }')}`;
    expect(issuesOf(text).join('\n')).toMatch(/ratings[\s\S]*shop\/strict|shop\/strict[\s\S]*ratings/);
  });
});
