// A tiny struct codec: C layout rules (natural alignment, trailing padding) over a field list, so
// each shared struct in bpf/include/sockmesh.h is described exactly once on this side.
import { bytesToIp, ipToBytes } from '../net/addr.js';

/** u16/u32/u64: host-order integers (little endian here); ip16: 16-byte address as a string;
 * ip4be: an IPv4 address in network byte order inside a __u32; pad: zero bytes, not decoded. */
export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | 'ip16' | 'ip4be' | 'pad8' | 'pad16' | 'pad32';

const SIZE: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, ip16: 16, ip4be: 4, pad8: 1, pad16: 2, pad32: 4 };
const ALIGN: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, ip16: 4, ip4be: 4, pad8: 1, pad16: 2, pad32: 4 };

export interface FieldLayout {
  /** The C member name. */
  name: string;
  offset: number;
  size: number;
}

export interface Codec<T> {
  /** The C type name (`struct sm_tuple`, or a scalar). */
  cName: string;
  size: number;
  fields: FieldLayout[];
  encode(value: T, into?: Buffer, at?: number): Buffer;
  decode(buf: Buffer, at?: number): T;
}

type FieldSpec<T> = [cMember: string, type: FieldType, key?: keyof T];

/**
 * Describe a struct: each entry names the C member, its type and the property of T it carries
 * (omitted for padding).
 */
export function struct<T>(cName: string, specs: FieldSpec<T>[]): Codec<T> {
  let offset = 0;
  let align = 1;
  const fields = specs.map(([name, type, key]) => {
    const a = ALIGN[type];
    align = Math.max(align, a);
    offset = Math.ceil(offset / a) * a;
    const f = { name, type, key, offset, size: SIZE[type] };
    offset += SIZE[type];
    return f;
  });
  const size = Math.ceil(offset / align) * align;
  return {
    cName,
    size,
    fields: fields.map(({ name, offset: o, size: s }) => ({ name, offset: o, size: s })),
    encode(value, into = Buffer.alloc(size), at = 0) {
      into.fill(0, at, at + size);
      for (const f of fields) {
        if (f.key === undefined) continue;
        writeField(into, at + f.offset, f.type, value[f.key]);
      }
      return into;
    },
    decode(buf, at = 0) {
      const out: Record<string, unknown> = {};
      for (const f of fields) {
        if (f.key !== undefined) out[f.key as string] = readField(buf, at + f.offset, f.type);
      }
      return out as T;
    },
  };
}

function writeField(buf: Buffer, at: number, type: FieldType, v: unknown): void {
  switch (type) {
    case 'u8': buf.writeUInt8(v as number, at); break;
    case 'u16': buf.writeUInt16LE(v as number, at); break;
    case 'u32': buf.writeUInt32LE(v as number, at); break;
    case 'u64': buf.writeBigUInt64LE(BigInt(v as number | bigint), at); break;
    case 'ip16': (v === null ? Buffer.alloc(16) : ipToBytes(v as string)).copy(buf, at); break;
    case 'ip4be': ipToBytes(v as string).copy(buf, at, 12, 16); break;
    default: break;
  }
}

function readField(buf: Buffer, at: number, type: FieldType): unknown {
  switch (type) {
    case 'u8': return buf.readUInt8(at);
    case 'u16': return buf.readUInt16LE(at);
    case 'u32': return buf.readUInt32LE(at);
    case 'u64': return buf.readBigUInt64LE(at);
    case 'ip16': {
      const b = buf.subarray(at, at + 16);
      return b.every((x) => x === 0) ? null : bytesToIp(b);
    }
    case 'ip4be': return Array.from(buf.subarray(at, at + 4)).join('.');
    default: return undefined;
  }
}

/** A plain scalar key or value (e.g. a __u16 port, a __u32 index). */
export function scalar(cName: string, type: 'u8' | 'u16' | 'u32' | 'u64'): Codec<number> {
  const size = SIZE[type];
  return {
    cName,
    size,
    fields: [],
    encode(value, into = Buffer.alloc(size), at = 0) {
      writeField(into, at, type, value);
      return into;
    },
    decode(buf, at = 0) {
      return Number(readField(buf, at, type));
    },
  };
}
