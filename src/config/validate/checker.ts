// The validator's primitives: a Checker collects every problem with its field path (nothing stops
// at the first), and its checks say what a field must be and what it got, quoting values short.
import { isIPv4, isIPv6 } from 'node:net';
import type { ConfigIssue } from '../../errors.js';
import { parseCidr } from '../../net/addr.js';
import { NAME_MAX, NAME_RE } from '../constants.js';

/** A label key: an optional DNS-subdomain prefix and a name of at most 63 characters. */
const LABEL_KEY_RE = /^(?:[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE_RE = /^(?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export class Checker {
  readonly issues: ConfigIssue[] = [];

  fail(path: string, message: string): undefined {
    this.issues.push({ path, message });
    return undefined;
  }

  /** An object with only the given keys; returns it, or undefined after reporting. */
  object(path: string, v: unknown, allowed: readonly string[]): Record<string, unknown> | undefined {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return this.fail(path, `must be a mapping, got ${kind(v)}`);
    for (const key of Object.keys(v)) {
      if (!allowed.includes(key)) this.fail(join(path, key), `unknown key (allowed: ${allowed.join(', ')})`);
    }
    return v as Record<string, unknown>;
  }

  array(path: string, v: unknown): unknown[] | undefined {
    if (!Array.isArray(v)) return this.fail(path, `must be a list, got ${kind(v)}`);
    return v;
  }

  int(path: string, v: unknown, min: number, max: number): number | undefined {
    if (typeof v !== 'number' || !Number.isInteger(v)) return this.fail(path, `must be an integer, got ${kind(v)}`);
    if (v < min || v > max) return this.fail(path, `must be between ${min} and ${max}, got ${v}`);
    return v;
  }

  port(path: string, v: unknown): number | undefined {
    return this.int(path, v, 1, 65535);
  }

  ports(path: string, v: unknown): number[] {
    const list = this.array(path, v) ?? [];
    const out = list.map((p, i) => this.port(`${path}[${i}]`, p)).filter((p): p is number => p !== undefined);
    const dup = out.find((p, i) => out.indexOf(p) !== i);
    if (dup !== undefined) this.fail(path, `port ${dup} is listed twice`);
    return out;
  }

  bool(path: string, v: unknown): boolean | undefined {
    if (typeof v !== 'boolean') return this.fail(path, `must be true or false, got ${kind(v)}`);
    return v;
  }

  ipv4(path: string, v: unknown): string | undefined {
    if (typeof v !== 'string' || !isIPv4(v)) return this.fail(path, `must be an IPv4 address, got ${quote(v)}`);
    return v;
  }

  /** An IPv4 or IPv6 address; IPv4-mapped IPv6 (::ffff:a.b.c.d) is written as the IPv4 address,
   * the one form the maps and rules know. */
  ip(path: string, v: unknown): string | undefined {
    if (typeof v === 'string' && isIPv4(v)) return v;
    if (typeof v !== 'string' || !isIPv6(v)) return this.fail(path, `must be an IPv4 or IPv6 address, got ${quote(v)}`);
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(v);
    return mapped ? mapped[1] : v.toLowerCase();
  }

  /** One of `values` (as `words` say them: default "one of a, b, c"); returns it, or undefined after reporting. */
  oneOf<T extends string>(path: string, v: unknown, values: readonly T[], words = `one of ${values.join(', ')}`): T | undefined {
    if (values.includes(v as T)) return v as T;
    return this.fail(path, `must be ${words}, got ${kind(v)}`);
  }

  /** A service or pod name: a lower-case DNS name of at most NAME_MAX characters. */
  name(path: string, v: unknown): string | undefined {
    if (typeof v === 'string' && NAME_RE.test(v) && v.length <= NAME_MAX) return v;
    return this.fail(path, `must be a lower-case DNS name (a-z, 0-9, '-', '.', at most ${NAME_MAX}), got ${kind(v)}`);
  }

  /** A non-empty string without NUL bytes, at most 4096 characters. */
  /** A string matching `re`, described as `what` when it does not. */
  match(path: string, v: unknown, re: RegExp, what: string): string | undefined {
    if (typeof v !== 'string' || !re.test(v)) return this.fail(path, `must be ${what}, got ${kind(v)}`);
    return v;
  }

  /** Kubernetes labels: [prefix/]name keys, values of at most 63 characters. */
  labels(path: string, raw: unknown): Record<string, string> {
    const out: Record<string, string> = Object.create(null) as Record<string, string>;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      this.fail(path, `must be a mapping of label keys to values, got ${kind(raw)}`);
      return out;
    }
    for (const [k, v] of Object.entries(raw)) {
      if (!LABEL_KEY_RE.test(k) || k.length > 317) this.fail(`${path}.${k}`, 'is not a Kubernetes label key ([prefix/]name)');
      else if (typeof v !== 'string' || !LABEL_VALUE_RE.test(v)) this.fail(`${path}.${k}`, `must be a label value (at most 63 letters, digits, '-', '_', '.'), got ${kind(v)}`);
      else out[k] = v;
    }
    return out;
  }

  nonEmptyString(path: string, v: unknown): string | undefined {
    if (typeof v !== 'string' || !v.trim()) return this.fail(path, `must be a non-empty string, got ${kind(v)}`);
    if (v.length > 4096) return this.fail(path, `is too long (${v.length} characters)`);
    if (v.includes('\0')) return this.fail(path, 'must not contain NUL bytes');
    return v;
  }

  /** "1s", "300ms", "1.5s", "2m": a duration as Istio writes it, in ms (1 ms to 1 h). */
  /** A duration such as 300ms, 1s, 2m or 24h, in ms, within [1 ms, max]. */
  duration(path: string, v: unknown, maxMs = 3_600_000): number | undefined {
    const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v) : null;
    const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'] : NaN;
    if (!(ms >= 1 && ms <= maxMs) || !Number.isInteger(ms)) {
      return this.fail(path, `must be a duration such as 300ms, 1s or 2m (1 ms to ${maxMs >= 3_600_000 ? `${maxMs / 3_600_000} h` : `${maxMs} ms`}), got ${kind(v)}`);
    }
    return ms;
  }

  /** A list of CIDRs, each as its canonical text. */
  cidrs(path: string, raw: unknown): string[] {
    const out: string[] = [];
    const list = raw === undefined ? [] : this.array(path, raw) ?? [];
    list.forEach((v, i) => {
      try {
        if (typeof v !== 'string') throw new TypeError(`got ${kind(v)}`);
        out.push(parseCidr(v).text);
      } catch {
        this.fail(`${path}[${i}]`, `must be a CIDR like 10.0.0.0/8, got ${typeof v === 'string' ? quote(v) : kind(v)}`);
      }
    });
    return out;
  }
}

/** Errors quote at most this much of a value: a 50 MB value must not come back on stderr. */
const QUOTE_MAX = 60;

/** A value for an error message, cut to a short prefix. */
export function quote(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > QUOTE_MAX ? `${text.slice(0, QUOTE_MAX)}… (${text.length} characters)` : text;
}

export function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${quote(v)}`;
}

export function join(path: string, ...keys: Array<string | number>): string {
  if (keys.length !== 1) return keys.reduce<string>((p, k) => join(p, k), path);
  const key = keys[0];
  if (typeof key === 'number') return `${path}[${key}]`;
  const k = key.length > QUOTE_MAX ? `${key.slice(0, QUOTE_MAX)}…` : key;
  return path ? `${path}.${k}` : k;
}

