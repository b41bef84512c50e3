import { describe, expect, it } from 'vitest';
import { bytesToIp, ipToBytes, parseCidr } from '../../src/net/addr.js';

describe('addresses', () => {
  it('stores IPv4 IPv4-mapped and reads it back', () => {
    expect(ipToBytes('10.96.0.20').toString('hex')).toBe('00000000000000000000ffff0a600014');
    expect(bytesToIp(ipToBytes('10.96.0.20'))).toBe('10.96.0.20');
  });

  it('parses IPv6 forms', () => {
    expect(ipToBytes('::1').toString('hex')).toBe('00000000000000000000000000000001');
    expect(ipToBytes('fd00:1::2').toString('hex')).toBe('fd000001000000000000000000000002');
    expect(ipToBytes('::ffff:1.2.3.4').equals(ipToBytes('1.2.3.4'))).toBe(true);
    expect(bytesToIp(ipToBytes('fd00:1::2'))).toBe('fd00:1::2');
  });

  it('masks CIDRs and scales IPv4 prefixes into the 128-bit space', () => {
    const c = parseCidr('10.1.2.3/8');
    expect(c.prefixlen).toBe(104);
    expect(bytesToIp(c.bytes)).toBe('10.0.0.0');
    expect(parseCidr('fd00::1/8').bytes.toString('hex')).toBe('fd000000000000000000000000000000');
    expect(parseCidr('1.2.3.4').prefixlen).toBe(128);
    expect(() => parseCidr('1.2.3.4/33')).toThrow();
    expect(() => parseCidr('1.2.3.4/x')).toThrow();
  });
});
