// Applying and removing the rule set in a private namespace: atomic, idempotent, exact.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { applyRules, natSave, removeRules, restore } from '../../src/iptables/apply.js';
import { normalizeSave, upRestore } from '../../src/iptables/rules.js';
import { Topology } from '../../src/topology/topology.js';
import { runCli } from '../helpers/cli.js';
import { privileged, uniqueName } from '../helpers/privileged.js';

const cfg = parseConfigText('services: [{ name: a, addresses: [10.96.0.20], ports: [9080] }]', 't');
const rules = (save: string) => normalizeSave(save).filter((l) => l.startsWith('-A') || l.startsWith(':SOCKMESH')).sort();

privileged('iptables rule set in a private namespace', () => {
  let topo: Topology;
  beforeAll(async () => {
    topo = await Topology.create(uniqueName('r'));
    // Someone else's rule in the same table: sockmesh must leave it alone.
    await restore(topo.netns, '*nat\n:OTHER - [0:0]\n-A OUTPUT -p udp -j OTHER\nCOMMIT\n');
  });
  afterAll(async () => {
    await topo?.close();
  });

  it('applies idempotently: a second up changes nothing', async () => {
    await applyRules(topo.netns, cfg, 'owner1');
    const once = rules(await natSave(topo.netns));
    await applyRules(topo.netns, cfg, 'owner1');
    expect(rules(await natSave(topo.netns))).toEqual(once);
    expect(once).toContain('-A OUTPUT -p tcp -j SOCKMESH_OUTPUT');
    expect(once).toContain('-A SOCKMESH_OUTPUT -d 10.96.0.20/32 -p tcp --dport 9080 -j SOCKMESH_REDIRECT');
    expect(once).toContain('-A SOCKMESH_OUTPUT -m comment --comment "sockmesh-instance=owner1"');
  });

  it('belongs to one instance: a second instance is refused and cannot remove the first one\'s rules', async () => {
    const before = rules(await natSave(topo.netns));
    await expect(applyRules(topo.netns, cfg, 'owner2')).rejects.toThrow(/already holds the iptables rules of sockmesh instance "owner1"/);
    expect(await removeRules(topo.netns, 'owner2')).toBe('foreign');
    expect(rules(await natSave(topo.netns))).toEqual(before);
  });

  it('splits long excluded port lists into multiport rules of at most 15 ports', async () => {
    const ports = Array.from({ length: 40 }, (_, i) => 20000 + i);
    const many = parseConfigText(`services: []\nexclude: { outboundPorts: [${ports.join(', ')}] }`, 't');
    await applyRules(topo.netns, many, 'owner1');
    const multi = rules(await natSave(topo.netns)).filter((l) => l.includes('multiport'));
    expect(multi).toHaveLength(3);
    expect(multi.flatMap((l) => /--dports (\S+)/.exec(l)![1].split(',')).map(Number).sort()).toEqual(ports);
    await applyRules(topo.netns, cfg, 'owner1');
  });

  it('is atomic: a transaction with a bad rule changes nothing', async () => {
    const before = rules(await natSave(topo.netns));
    const changed = parseConfigText('services: [{ name: a, addresses: [10.96.0.21], ports: [9443] }]', 't');
    const broken = upRestore(changed, await natSave(topo.netns)).replace('COMMIT', '-A SOCKMESH_OUTPUT -j NO_SUCH_CHAIN\nCOMMIT');
    await expect(restore(topo.netns, broken)).rejects.toThrow(/iptables-restore in network namespace/);
    expect(rules(await natSave(topo.netns))).toEqual(before);
  });

  it('dry-run prints the restore input and applies nothing new', async () => {
    const r = await runCli(['up', '--mode', 'iptables', '--netns', topo.netns, '--dry-run', '--instance', uniqueName('d')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\*nat\n:SOCKMESH_INBOUND - \[0:0\]\n/);
    expect(r.stdout).toMatch(/-A SOCKMESH_OUTPUT -d 10\.96\.0\.20\/32 -p tcp --dport 9080 -j SOCKMESH_REDIRECT\nCOMMIT\n# ip6tables-restore --noflush\n\*nat\n/);
    // The IPv6 set: ::1 and ::6, no IPv4 service address.
    const v6 = r.stdout.slice(r.stdout.indexOf('# ip6tables-restore'));
    expect(v6).toMatch(/-A SOCKMESH_OUTPUT -o lo -s ::6\/128 -j RETURN/);
    expect(v6).toMatch(/-A SOCKMESH_OUTPUT -d ::1\/128 -j RETURN/);
    expect(v6).not.toMatch(/10\.96\.0\.20/);
  });

  it('down removes exactly what up added', async () => {
    expect(await removeRules(topo.netns, 'owner1')).toBe('removed');
    expect(rules(await natSave(topo.netns))).toEqual(['-A OUTPUT -p udp -j OTHER']);
    expect(await removeRules(topo.netns, 'owner1')).toBe('absent');
  });
}, ['ip', 'iptables-restore']);
