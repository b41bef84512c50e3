// The generated rule text is pinned here: any change to it must be deliberate.
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { canonicalRule, downRestore, upRestore } from '../../src/iptables/rules.js';

const services = parseConfigText(`
services:
  - { name: reviews, addresses: [10.96.0.20], ports: [9080] }
  - { name: ratings, addresses: [10.96.0.21], ports: [9080], redirect: false }
  - { name: anyport, ports: [9080, 9443] }
exclude: { outboundPorts: [22], outboundCIDRs: [169.254.0.0/16] }
`, 't');

describe('iptables rule set', () => {
  it('services mode (sockmesh default), from an empty nat table', () => {
    expect(upRestore(services, '*nat\nCOMMIT\n', 'pod-a')).toBe(`*nat
:SOCKMESH_INBOUND - [0:0]
:SOCKMESH_REDIRECT - [0:0]
:SOCKMESH_IN_REDIRECT - [0:0]
:SOCKMESH_OUTPUT - [0:0]
-A SOCKMESH_OUTPUT -m comment --comment "sockmesh-instance=pod-a"
-A SOCKMESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A SOCKMESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A SOCKMESH_INBOUND -p tcp --dport 15008 -j RETURN
-A SOCKMESH_INBOUND -p tcp --dport 15090 -j RETURN
-A SOCKMESH_INBOUND -p tcp --dport 15021 -j RETURN
-A SOCKMESH_INBOUND -p tcp --dport 15020 -j RETURN
-A SOCKMESH_INBOUND -p tcp -j SOCKMESH_IN_REDIRECT
-A SOCKMESH_OUTPUT -p tcp -m multiport --dports 22 -j RETURN
-A SOCKMESH_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A SOCKMESH_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j SOCKMESH_IN_REDIRECT
-A SOCKMESH_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A SOCKMESH_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A SOCKMESH_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j SOCKMESH_IN_REDIRECT
-A SOCKMESH_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A SOCKMESH_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A SOCKMESH_OUTPUT -d 127.0.0.1/32 -j RETURN
-A SOCKMESH_OUTPUT -d 169.254.0.0/16 -j RETURN
-A SOCKMESH_OUTPUT -d 10.96.0.20/32 -p tcp --dport 9080 -j SOCKMESH_REDIRECT
-A SOCKMESH_OUTPUT -d 10.96.0.21/32 -p tcp --dport 9080 -j RETURN
-A SOCKMESH_OUTPUT -p tcp --dport 9080 -j SOCKMESH_REDIRECT
-A SOCKMESH_OUTPUT -p tcp --dport 9443 -j SOCKMESH_REDIRECT
-A PREROUTING -p tcp -j SOCKMESH_INBOUND
-A OUTPUT -p tcp -j SOCKMESH_OUTPUT
COMMIT
`);
  });

  it('outbound: all with include lists, as istio-init', () => {
    const all = parseConfigText(`
services: []
capture: { outbound: all, includeOutboundCIDRs: [10.96.0.0/12], includeOutboundPorts: [8443], includeInboundPorts: [9080, 15090] }
`, 't');
    const text = upRestore(all, '');
    expect(text).toContain('-A SOCKMESH_INBOUND -p tcp --dport 9080 -j SOCKMESH_IN_REDIRECT\n-A SOCKMESH_OUTPUT');
    expect(text).not.toContain('--dport 15090 -j SOCKMESH_IN_REDIRECT');
    expect(text).toContain(`-A SOCKMESH_OUTPUT -d 127.0.0.1/32 -j RETURN
-A SOCKMESH_OUTPUT -p tcp --dport 8443 -j SOCKMESH_REDIRECT
-A SOCKMESH_OUTPUT -d 10.96.0.0/12 -j SOCKMESH_REDIRECT
-A SOCKMESH_OUTPUT -j RETURN
`);
    const star = upRestore(parseConfigText('services: []\ncapture: { outbound: all, includeInboundPorts: [] }', 't'), '');
    expect(star).toContain('-A SOCKMESH_OUTPUT -d 127.0.0.1/32 -j RETURN\n-A SOCKMESH_OUTPUT -j SOCKMESH_REDIRECT\n');
    expect(star).not.toContain('PREROUTING');
  });

  it('adds no jump twice and removes a stale inbound jump', () => {
    const present = '*nat\n:SOCKMESH_OUTPUT - [0:0]\n-A PREROUTING -p tcp -j SOCKMESH_INBOUND\n-A OUTPUT -p tcp -j SOCKMESH_OUTPUT\nCOMMIT\n';
    const again = upRestore(parseConfigText('services: []\ncapture: { includeInboundPorts: [] }', 't'), present);
    expect(again).not.toContain('-A OUTPUT -p tcp -j SOCKMESH_OUTPUT');
    expect(again).toContain('-D PREROUTING -p tcp -j SOCKMESH_INBOUND');
  });

  it('down removes exactly our jumps and chains', () => {
    const save = `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:OTHER - [0:0]
:SOCKMESH_OUTPUT - [0:0]
:SOCKMESH_REDIRECT - [0:0]
-A OUTPUT -p tcp -j OTHER
-A OUTPUT -p tcp -j SOCKMESH_OUTPUT
-A SOCKMESH_OUTPUT -j SOCKMESH_REDIRECT
COMMIT
`;
    expect(downRestore(save)).toBe(`*nat
-D OUTPUT -p tcp -j SOCKMESH_OUTPUT
:SOCKMESH_REDIRECT - [0:0]
:SOCKMESH_OUTPUT - [0:0]
-X SOCKMESH_REDIRECT
-X SOCKMESH_OUTPUT
COMMIT
`);
  });
});

describe('canonicalRule', () => {
  it('identifies a rule whatever order iptables-save prints its matches in, and keeps negations apart', () => {
    expect(canonicalRule('-A SOCKMESH_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN')).toBe(canonicalRule('-A SOCKMESH_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN'));
    expect(canonicalRule('-A O ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j R')).toBe(canonicalRule('-A O -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j R'));
    expect(canonicalRule('-A X -d 1.2.3.4/32 -j Y')).not.toBe(canonicalRule('-A X ! -d 1.2.3.4/32 -j Y'));
    expect(canonicalRule('-A X -d 1.2.3.4/32 -j Y')).not.toBe(canonicalRule('-A Z -d 1.2.3.4/32 -j Y'));
    expect(canonicalRule('-A O -m comment --comment "a b" -j R')).toBe(canonicalRule('-A O -j R -m comment --comment "a b"'));
  });
});
