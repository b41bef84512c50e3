// deploy/: every manifest validates against the Kubernetes API schemas (kubernetes-models), the
// RBAC rules are exactly what the agent calls, the DaemonSet runs unprivileged with exactly the
// capabilities it needs and the host paths it reads, and the image has no compiler.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { describe, expect, it } from 'vitest';
import { DAEMONSET_CAPABILITIES } from '../helpers/capabilities.js';

const DIR = 'deploy';
type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown };

const docs: Doc[] = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort()
  .flatMap((f) => loadAll(readFileSync(join(DIR, f), 'utf8')) as Doc[]).filter(Boolean);

const MODELS: Record<string, new (d: never) => { validate(): void }> = {
  'apps/v1/DaemonSet': DaemonSet,
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
};

const one = (kind: string) => {
  const found = docs.filter((d) => d.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0] as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
};

describe('deploy/ manifests', () => {
  it('every document validates against its Kubernetes API schema', () => {
    expect(docs.map((d) => d.kind).sort()).toEqual(['ClusterRole', 'ClusterRoleBinding', 'DaemonSet', 'Namespace', 'Role', 'RoleBinding', 'ServiceAccount']);
    for (const d of docs) {
      const Model = MODELS[`${d.apiVersion}/${d.kind}`];
      expect(Model, `${d.apiVersion} ${d.kind}`).toBeDefined();
      expect(() => new Model(d as never).validate(), `${d.kind} ${d.metadata.name}`).not.toThrow();
    }
  });

  it('the schema check catches a broken manifest (a port given as a string)', () => {
    const ds = structuredClone(one('DaemonSet'));
    ds.spec.template.spec.containers[0].ports[0].containerPort = 'metrics';
    expect(() => new DaemonSet(ds as never).validate()).toThrow(/containerPort/);
  });

  it('RBAC: exactly get/list/watch on pods, services, endpointslices, Istio destinationrules/virtualservices/peerauthentications/authorizationpolicies and create on events, bound to the agent', () => {
    const rules = one('ClusterRole').rules as Array<{ apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }>;
    const grants = rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g || 'core'}/${res}:${v}`)))).sort();
    expect(grants).toEqual([
      'core/events:create',
      'core/pods:get', 'core/pods:list', 'core/pods:watch',
      'core/services:get', 'core/services:list', 'core/services:watch',
      'discovery.k8s.io/endpointslices:get', 'discovery.k8s.io/endpointslices:list', 'discovery.k8s.io/endpointslices:watch',
      'networking.istio.io/destinationrules:get', 'networking.istio.io/destinationrules:list', 'networking.istio.io/destinationrules:watch',
      'networking.istio.io/virtualservices:get', 'networking.istio.io/virtualservices:list', 'networking.istio.io/virtualservices:watch',
      'security.istio.io/peerauthentications:get', 'security.istio.io/peerauthentications:list', 'security.istio.io/peerauthentications:watch',
      'security.istio.io/authorizationpolicies:get', 'security.istio.io/authorizationpolicies:list', 'security.istio.io/authorizationpolicies:watch',
    ].sort());
    // The CA's Secret: get on cacerts alone, create (Kubernetes cannot name what is created), in the agent's namespace only.
    const role = one('Role');
    expect(role.metadata.namespace).toBe(one('ServiceAccount').metadata.namespace);
    expect(role.rules).toEqual([{ apiGroups: [''], resources: ['secrets'], resourceNames: ['cacerts'], verbs: ['get'] }, { apiGroups: [''], resources: ['secrets'], verbs: ['create'] }]);
    expect(one('RoleBinding')).toMatchObject({ roleRef: { kind: 'Role', name: role.metadata.name }, subjects: [{ kind: 'ServiceAccount', name: one('ServiceAccount').metadata.name }] });
    const binding = one('ClusterRoleBinding');
    const sa = one('ServiceAccount');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: one('ClusterRole').metadata.name });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    expect(one('DaemonSet').spec.template.spec.serviceAccountName).toBe(sa.metadata.name);
  });

  it('DaemonSet: not privileged, no host namespaces, exactly the capabilities the agent needs', () => {
    const pod = one('DaemonSet').spec.template.spec;
    expect(pod.hostPID ?? false).toBe(false);
    expect(pod.hostNetwork ?? false).toBe(false);
    expect(pod.hostIPC ?? false).toBe(false);
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0];
    expect(c.securityContext.privileged).toBe(false);
    expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(c.securityContext.capabilities.drop).toEqual(['ALL']);
    expect([...c.securityContext.capabilities.add].sort()).toEqual([...DAEMONSET_CAPABILITIES].sort());
  });

  it('DaemonSet: NODE_NAME from the downward API, probes on /healthz and /readyz, host paths', () => {
    const pod = one('DaemonSet').spec.template.spec;
    const c = pod.containers[0];
    expect(c.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
    expect(c.env).toContainEqual({ name: 'SOCKMESH_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } });
    expect(c.args).toContain('--kubernetes');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    const port = c.ports.find((p: { name: string }) => p.name === c.livenessProbe.httpGet.port).containerPort;
    expect(c.args).toContain(`--listen=0.0.0.0:${port}`);
    expect(c.lifecycle.preStop.exec.command).not.toContain('down');
    const hostPaths = Object.fromEntries(pod.volumes.filter((v: { hostPath?: unknown }) => v.hostPath).map((v: { name: string; hostPath: { path: string } }) => [v.name, v.hostPath.path]));
    const mounts = Object.fromEntries(c.volumeMounts.map((m: { name: string }) => [m.name, m]));
    expect(Object.values(hostPaths).sort()).toEqual(['/proc', '/run/sockmesh', '/sys/fs/bpf', '/sys/fs/cgroup']);
    const byPath = (p: string) => mounts[Object.keys(hostPaths).find((n) => hostPaths[n] === p)!];
    expect(byPath('/proc')).toMatchObject({ mountPath: '/host/proc', readOnly: true });
    expect(c.args).toContain('--proc=/host/proc');
    expect(byPath('/sys/fs/cgroup')).toMatchObject({ readOnly: true });
    expect(byPath('/sys/fs/bpf').readOnly ?? false).toBe(false);
  });

  it('Dockerfile: Node 20 slim, bpftool and iptables, the committed BPF object, no compiler in the final image', () => {
    const text = readFileSync(join(DIR, 'Dockerfile'), 'utf8');
    const stages = text.split(/^FROM /m).slice(1);
    const final = stages.at(-1)!;
    expect(final).toMatch(/^node:20-bookworm-slim/);
    expect(final).toMatch(/apt-get install[^\n]*\bbpftool\b/);
    expect(final).toMatch(/apt-get install[^\n]*\biptables\b/);
    expect(final).not.toMatch(/\b(clang|gcc|llvm|build-essential|make)\b/);
    expect(final).toMatch(/COPY bpf\/sockmesh\.bpf\.o /);
    for (const m of text.matchAll(/^COPY (?!--from)(\S+)/gm)) expect(existsSync(m[1]), m[1]).toBe(true);
  });
});
