// The one catalogue of sockmesh errors: every error has a stable code and may chain a cause.
// UserError marks mistakes the user can fix (bad config, unknown service): the CLI prints them
// without a stack trace. NotSupportedError names the kernel feature that is missing.

export const Codes = {
  CONFIG_INVALID: 'SOCKMESH_E_CONFIG_INVALID',
  CONFIG_READ: 'SOCKMESH_E_CONFIG_READ',
  NOT_ROOT: 'SOCKMESH_E_NOT_ROOT',
  FORBIDDEN: 'SOCKMESH_E_FORBIDDEN',
  NOT_SUPPORTED: 'SOCKMESH_E_NOT_SUPPORTED',
  BPFFS: 'SOCKMESH_E_BPFFS',
  CGROUP: 'SOCKMESH_E_CGROUP',
  BPFTOOL: 'SOCKMESH_E_BPFTOOL',
  LOAD: 'SOCKMESH_E_LOAD',
  ATTACH: 'SOCKMESH_E_ATTACH',
  MAP: 'SOCKMESH_E_MAP',
  SYSCALL: 'SOCKMESH_E_SYSCALL',
  INSTANCE_MISSING: 'SOCKMESH_E_INSTANCE_MISSING',
  INSTANCE_CONFLICT: 'SOCKMESH_E_INSTANCE_CONFLICT',
  INSTANCE_BUSY: 'SOCKMESH_E_INSTANCE_BUSY',
  RECORD_DAMAGED: 'SOCKMESH_E_RECORD_DAMAGED',
  STACKED: 'SOCKMESH_E_STACKED',
  SERVICE_UNKNOWN: 'SOCKMESH_E_SERVICE_UNKNOWN',
  USAGE: 'SOCKMESH_E_USAGE',
  TOPOLOGY: 'SOCKMESH_E_TOPOLOGY',
  INTERRUPTED: 'SOCKMESH_E_INTERRUPTED',
  INTERNAL: 'SOCKMESH_E_INTERNAL',
} as const;

export type Code = (typeof Codes)[keyof typeof Codes];

export class SockmeshError extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SockmeshError';
    this.code = code;
  }
}

/** A mistake the user can fix; reported without a stack trace. */
export class UserError extends SockmeshError {
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'UserError';
  }
}

/** One problem in a config, located by its path (e.g. `services[1].ports[0]`). */
export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends UserError {
  /** At most this many problems are listed in the message (all are in `issues`). */
  static readonly SHOWN = 50;
  readonly issues: ConfigIssue[];

  constructor(source: string, issues: ConfigIssue[]) {
    const shown = issues.slice(0, ConfigError.SHOWN);
    const lines = shown.map((i) => `  ${i.path || '(top level)'}: ${i.message}`);
    if (issues.length > shown.length) lines.push(`  … and ${issues.length - shown.length} more problems`);
    super(Codes.CONFIG_INVALID, `invalid config ${source}:\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** The kernel lacks something sockmesh needs; `feature` names it. */
export class NotSupportedError extends SockmeshError {
  readonly feature: string;

  constructor(feature: string, detail: string, options?: { cause?: unknown }) {
    super(Codes.NOT_SUPPORTED, `kernel feature not supported: ${feature} (${detail})`, options);
    this.name = 'NotSupportedError';
    this.feature = feature;
  }
}

/** A failed system or libbpf call, with the errno it returned. */
export class SyscallError extends SockmeshError {
  readonly errno: number;
  readonly syscall: string;

  constructor(syscall: string, errno: number, what: string) {
    super(Codes.SYSCALL, `${syscall} failed for ${what}: ${errnoName(errno)}`);
    this.name = 'SyscallError';
    this.errno = errno;
    this.syscall = syscall;
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 7: 'E2BIG', 9: 'EBADF', 12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT',
  16: 'EBUSY', 17: 'EEXIST', 22: 'EINVAL', 28: 'ENOSPC', 92: 'ENOPROTOOPT', 95: 'EOPNOTSUPP',
  524: 'ENOTSUPP',
};

export function errnoName(errno: number): string {
  return `${ERRNO_NAMES[errno] ?? 'errno'} (${errno})`;
}

/** The whole cause chain, one message a line, for logs and the CLI. */
export function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 8; depth++) {
    if (e instanceof Error) {
      parts.push(depth === 0 ? e.message : `caused by: ${e.message}`);
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.join('\n');
}
