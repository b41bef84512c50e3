// Kubernetes objects to config fragments: which pods are meshed, Istio's annotations, the kubelet's
// cgroup paths for both drivers, Services and their annotations. Pure functions.
import { describe, expect, it } from 'vitest';
import { podObject, serviceObject, sliceObject } from '../../src/bench/k8s-objects.js';
import { validateService } from '../../src/config/validate/index.js';
import { candidatesUnder } from '../../src/sources/kubernetes/locate.js';
import {
  meshReason, podCgroupCandidates, sliceAddresses, translatePod, translateService, trimPod, trimService, trimSlice,
  type KPod, type KService, type KEndpointSlice,
} from '../../src/sources/kubernetes/translate.js';

const pod = (o: Partial<Parameters<typeof podObject>[0]> = {}) => trimPod(podObject({ name: 'web', node: 'n1', ips: ['10.244.1.5'], istioProxy: true, ...o }) as unknown as KPod);
const svc = (annotations: Record<string, string> = {}, clusterIP = '10.96.0.10', ports = [80]) =>
  trimService(serviceObject({ name: 'reviews', namespace: 'shop', clusterIP, ports, annotations }) as unknown as KService);

describe('which pods are meshed', () => {
  it('an istio-proxy container, the sidecar.istio.io/status annotation, or the sockmesh.io/mesh label', () => {
    expect(meshReason(pod())).toBe('istio-proxy container');
    expect(meshReason(pod({ istioProxy: false, annotations: { 'sidecar.istio.io/status': '{}' } }))).toBe('annotation sidecar.istio.io/status');
    expect(meshReason(pod({ istioProxy: false, labels: { 'sockmesh.io/mesh': 'enabled' } }))).toBe('label sockmesh.io/mesh');
    expect(meshReason(pod({ istioProxy: false }))).toBeUndefined();
    expect(meshReason(pod({ istioProxy: false, labels: { 'sockmesh.io/mesh': 'disabled' } }))).toBeUndefined();
  });

  it('sidecar.istio.io/inject: "false" opts out, as annotation or label', () => {
    expect(meshReason(pod({ annotations: { 'sidecar.istio.io/inject': 'false' } }))).toBeUndefined();
    expect(meshReason(pod({ labels: { 'sockmesh.io/mesh': 'enabled', 'sidecar.istio.io/inject': 'false' } }))).toBeUndefined();
  });

  it('skips pods of other nodes, host-network pods and finished pods, saying why', () => {
    expect(translatePod(pod(), 'n2')).toEqual({ kind: 'skip', reason: 'scheduled on n1' });
    const host = pod();
    host.spec.hostNetwork = true;
    expect(translatePod(host, 'n1')).toMatchObject({ kind: 'skip', reason: expect.stringMatching(/host network/) });
    expect(translatePod(pod({ phase: 'Succeeded' }), 'n1')).toMatchObject({ kind: 'skip', reason: 'phase Succeeded' });
  });
});

describe('pods', () => {
  it('takes the name, addresses (status.podIPs, both families), QoS class, the proxy\'s runAsUser and the workload identity', () => {
    const p = pod({ namespace: 'shop', ips: ['10.244.1.5', 'fd00::5'], qos: 'Burstable', istioProxy: { runAsUser: 1500 } });
    expect(translatePod(p, 'n1')).toEqual({
      kind: 'ok',
      value: {
        name: 'web.shop', uid: p.metadata.uid, qos: 'Burstable', addresses: ['10.244.1.5', 'fd00::5'], sidecarUid: 1500, capture: {},
        namespace: 'shop', serviceAccount: 'default', labels: { app: 'web' },
      },
    });
    // No runAsUser: the node's sidecar uid applies.
    expect(translatePod(pod({ istioProxy: false, labels: { 'sockmesh.io/mesh': 'enabled' } }), 'n1')).toMatchObject({ kind: 'ok', value: { sidecarUid: undefined } });
  });

  it('maps Istio\'s capture annotations onto the pod\'s capture fields', () => {
    const p = pod({
      annotations: {
        'traffic.sidecar.istio.io/includeInboundPorts': '*',
        'traffic.sidecar.istio.io/excludeInboundPorts': '8081, 8082',
        'traffic.sidecar.istio.io/includeOutboundPorts': '5432',
        'traffic.sidecar.istio.io/excludeOutboundPorts': '3306,3306',
        'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.96.0.0/12,10.244.0.0/16',
        'traffic.sidecar.istio.io/excludeOutboundIPRanges': '169.254.169.254/32',
      },
    });
    expect(translatePod(p, 'n1')).toMatchObject({
      kind: 'ok',
      value: {
        capture: {
          includeInboundPorts: '*', excludeInboundPorts: [8081, 8082], includeOutboundPorts: [5432], excludeOutboundPorts: [3306],
          includeOutboundCIDRs: ['10.96.0.0/12', '10.244.0.0/16'], excludeOutboundCIDRs: ['169.254.169.254/32'],
        },
      },
    });
  });

  it('reports each malformed annotation by name', () => {
    const p = pod({ annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '80,http', 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '10.0.0.0/33' } });
    expect(translatePod(p, 'n1')).toEqual({
      kind: 'invalid',
      problems: [
        { field: 'traffic.sidecar.istio.io/excludeOutboundPorts', message: '"http" is not a port (1-65535)' },
        { field: 'traffic.sidecar.istio.io/excludeOutboundIPRanges', message: '"10.0.0.0/33" is not a CIDR' },
      ],
    });
    expect(translatePod(pod({ annotations: { 'traffic.sidecar.istio.io/excludeInboundPorts': '70000' } }), 'n1')).toMatchObject({ kind: 'invalid' });
  });
});

describe('kubelet cgroup paths', () => {
  const uid = '2f1c8a4e-5b6d-4c3e-9f2a-1b2c3d4e5f60';
  it('cgroupfs and systemd drivers, every QoS class', () => {
    expect(podCgroupCandidates(uid, 'BestEffort')).toEqual([
      `kubepods/besteffort/pod${uid}`,
      'kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2f1c8a4e_5b6d_4c3e_9f2a_1b2c3d4e5f60.slice',
    ]);
    expect(podCgroupCandidates(uid, 'Burstable')).toEqual([
      `kubepods/burstable/pod${uid}`,
      'kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2f1c8a4e_5b6d_4c3e_9f2a_1b2c3d4e5f60.slice',
    ]);
    expect(podCgroupCandidates(uid, 'Guaranteed')).toEqual([
      `kubepods/pod${uid}`,
      'kubepods.slice/kubepods-pod2f1c8a4e_5b6d_4c3e_9f2a_1b2c3d4e5f60.slice',
    ]);
  });

  it('relative to --cgroup, whether that is the cgroup2 root or the kubepods directory itself', () => {
    expect(candidatesUnder('/sys/fs/cgroup', uid, 'Guaranteed')).toEqual([`kubepods/pod${uid}`, 'kubepods.slice/kubepods-pod2f1c8a4e_5b6d_4c3e_9f2a_1b2c3d4e5f60.slice']);
    expect(candidatesUnder('/sys/fs/cgroup/kubepods', uid, 'Burstable')[0]).toBe(`burstable/pod${uid}`);
    expect(candidatesUnder('/sys/fs/cgroup/kubepods.slice', uid, 'Burstable')[1]).toBe('kubepods-burstable.slice/kubepods-burstable-pod2f1c8a4e_5b6d_4c3e_9f2a_1b2c3d4e5f60.slice');
  });
});

describe('services', () => {
  it('a ClusterIP Service: its cluster addresses and TCP ports, named name.namespace; the fragment validates', () => {
    const t = translateService(svc({}, '10.96.0.10', [80, 443]), () => []);
    expect(t).toEqual({ kind: 'ok', value: { name: 'reviews.shop', addresses: ['10.96.0.10'], ports: [80, 443], redirect: true, splice: 'auto' } });
    if (t.kind === 'ok') expect(validateService(t.value, 'x', 'test')).toEqual(t.value);
  });

  it('sockmesh.io/redirect and sockmesh.io/splice', () => {
    expect(translateService(svc({ 'sockmesh.io/redirect': 'false', 'sockmesh.io/splice': 'never' }), () => [])).toMatchObject({ kind: 'ok', value: { redirect: false, splice: 'never' } });
    expect(translateService(svc({ 'sockmesh.io/redirect': 'off' }), () => [])).toEqual({
      kind: 'invalid', problems: [{ field: 'sockmesh.io/redirect', message: 'must be "true" or "false", got "off"' }],
    });
    expect(translateService(svc({ 'sockmesh.io/splice': 'sometimes' }), () => [])).toMatchObject({ kind: 'invalid', problems: [{ field: 'sockmesh.io/splice' }] });
  });

  it('sockmesh.io/mode: kernel: the ready endpoints at their target ports, ClientIP affinity, UDP-only Services, terminate-on-remove', () => {
    const slice = trimSlice(sliceObject({ name: 'r-1', service: 'reviews', namespace: 'shop', addresses: ['10.244.1.7', '10.244.2.8'], port: 9080 }) as unknown as KEndpointSlice);
    slice.endpoints[1].conditions = { ready: false };
    const k = svc({ 'sockmesh.io/mode': 'kernel' }, '10.96.0.10', [80]);
    // Port 80 -> target port 9080 (by name, as Deployments usually name them).
    k.spec.ports = [{ port: 80, protocol: 'TCP', name: 'http', targetPort: 'tcp-9080' }];
    k.spec.sessionAffinity = 'ClientIP';
    const t = translateService(k, () => [], () => [slice]);
    expect(t).toEqual({ kind: 'ok', value: { name: 'reviews.shop', addresses: ['10.96.0.10'], ports: [80], redirect: true, mode: 'kernel', endpoints: ['10.244.1.7:9080'], affinity: 'client' } });
    if (t.kind === 'ok') expect(validateService(t.value, 'x', 'test')).toMatchObject({ mode: 'kernel', affinity: 'client', endpoints: [{ address: '10.244.1.7', port: 9080, weight: 1 }] });
    // Ports equal to their target ports: bare addresses, each connection keeps its port.
    const multi = svc({ 'sockmesh.io/mode': 'kernel', 'sockmesh.io/terminate-on-remove': 'true' }, '10.96.0.10', [80, 443]);
    expect(translateService(multi, () => [], () => [slice])).toMatchObject({ kind: 'ok', value: { ports: [80, 443], endpoints: ['10.244.1.7'], terminateOnRemove: true } });
    multi.spec.ports![1].targetPort = 8443;
    expect(translateService(multi, () => [], () => [slice])).toMatchObject({ kind: 'invalid', problems: [{ field: 'sockmesh.io/mode', message: expect.stringMatching(/other target ports/) }] });
    const dns = svc({ 'sockmesh.io/mode': 'kernel' }, '10.96.0.10', [53]);
    dns.spec.ports = [{ port: 53, protocol: 'UDP', targetPort: 53 }];
    expect(translateService(dns, () => [], () => [slice])).toMatchObject({ kind: 'ok', value: { ports: [53], protocol: 'udp', endpoints: ['10.244.1.7'] } });
    expect(translateService(svc({ 'sockmesh.io/mode': 'kernel' }, 'None', [80]), () => [], () => [slice])).toMatchObject({ kind: 'invalid', problems: [{ message: expect.stringMatching(/headless/) }] });
    expect(translateService(svc({ 'sockmesh.io/mode': 'fast' }), () => [])).toMatchObject({ kind: 'invalid', problems: [{ field: 'sockmesh.io/mode' }] });
  });

  it('a dual-stack Service is captured on both cluster addresses, a headless one on IPv6 endpoints too', () => {
    const dual = svc();
    dual.spec.clusterIPs = ['10.96.0.10', 'fd00:96::10'];
    expect(translateService(dual, () => [])).toMatchObject({ kind: 'ok', value: { addresses: ['10.96.0.10', 'fd00:96::10'] } });
    const v6 = trimSlice(sliceObject({ name: 'db-2', service: 'db', addresses: ['fd00:244::7'], port: 5432 }) as unknown as KEndpointSlice);
    v6.addressType = 'IPv6';
    const v4 = trimSlice(sliceObject({ name: 'db-1', service: 'db', addresses: ['10.244.1.7'], port: 5432 }) as unknown as KEndpointSlice);
    expect(sliceAddresses([v4, v6], 'all')).toEqual(['10.244.1.7', 'fd00:244::7']);
    // Kernel mode's endpoints stay IPv4.
    expect(sliceAddresses([v4, v6])).toEqual(['10.244.1.7']);
  });

  it('a headless Service captures its ready endpoints; ExternalName and UDP-only are skipped', () => {
    const slice = trimSlice(sliceObject({ name: 'db-1', service: 'db', addresses: ['10.244.1.7', '10.244.2.8'], port: 5432 }) as unknown as KEndpointSlice);
    slice.endpoints[1].conditions = { ready: false };
    expect(translateService(svc({}, 'None', [5432]), () => sliceAddresses([slice]))).toMatchObject({ kind: 'ok', value: { addresses: ['10.244.1.7'] } });
    expect(translateService(svc({}, 'None', [5432]), () => [])).toMatchObject({ kind: 'skip' });
    const ext = svc();
    ext.spec.type = 'ExternalName';
    expect(translateService(ext, () => [])).toMatchObject({ kind: 'skip', reason: expect.stringMatching(/ExternalName/) });
    const udp = svc();
    udp.spec.ports = [{ port: 53, protocol: 'UDP' }];
    expect(translateService(udp, () => [])).toMatchObject({ kind: 'skip', reason: 'no TCP ports' });
  });

  it('trimming keeps what sockmesh reads and drops the rest (managedFields, last-applied, status)', () => {
    const full = serviceObject({ name: 'reviews', clusterIP: '10.96.0.10', ports: [80], annotations: { 'sockmesh.io/redirect': 'false', 'other.io/x': 'y' } });
    const t = trimService(full as unknown as KService);
    expect(t.metadata.annotations).toEqual({ 'sockmesh.io/redirect': 'false' });
    expect(JSON.stringify(t)).not.toMatch(/managedFields|other\.io|loadBalancer/);
    expect(JSON.stringify(t).length).toBeLessThan(JSON.stringify(full).length / 2);
  });
});
