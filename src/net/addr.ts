// IP address and CIDR parsing into the 16-byte form the BPF maps use (IPv4 stored IPv4-mapped).
import { isIPv4, isIPv6 } from 'node:net';

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

export function isIp(s: string): boolean {
  return isIPv4(s) || isIPv6(s);
}

/** 16 bytes in network order; IPv4 becomes ::ffff:a.b.c.d. Throws on anything else. */
export function ipToBytes(s: string): Buffer {
  if (isIPv4(s)) return Buffer.concat([V4_MAPPED_PREFIX, Buffer.from(s.split('.').map(Number))]);
  if (!isIPv6(s)) throw new TypeError(`not an IP address: ${s}`);
  let text = s;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (isIPv4(tail)) {
    // Embedded dotted quad: rewrite it as two hex groups.
    const b = tail.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, rest] = text.split('::');
  const groupsOf = (part: string | undefined) => (part ? part.split(':') : []);
  const h = groupsOf(head);
  const t = groupsOf(rest);
  const groups = rest === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function isV4Mapped(bytes: Buffer): boolean {
  return bytes.subarray(0, 12).equals(V4_MAPPED_PREFIX);
}

/** Inverse of ipToBytes: IPv4-mapped addresses come back as dotted quads. */
export function bytesToIp(bytes: Buffer): string {
  if (isV4Mapped(bytes)) return Array.from(bytes.subarray(12, 16)).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

export interface Cidr {
  /** The network address in 16-byte form. */
  bytes: Buffer;
  /** Prefix length over the 16-byte form (an IPv4 /n is 96 + n). */
  prefixlen: number;
  text: string;
}

/** `a.b.c.d/n`, `x::/n` or a bare address (a host route). */
export function parseCidr(s: string): Cidr {
  const [ip, len, extra] = s.split('/');
  if (extra !== undefined || !ip || !isIp(ip)) throw new TypeError(`not a CIDR: ${s}`);
  const max = isIPv4(ip) ? 32 : 128;
  const n = len === undefined ? max : Number(len);
  if (!/^\d+$/.test(len ?? String(max)) || n > max) throw new TypeError(`bad prefix length in ${s}`);
  const bytes = ipToBytes(ip);
  const prefixlen = max === 32 ? 96 + n : n;
  for (let bit = prefixlen; bit < 128; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7));
  return { bytes, prefixlen, text: `${ip}/${n}` };
}
