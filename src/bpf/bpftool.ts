// bpftool, the one tool sockmesh loads and attaches with.
import { Codes, SockmeshError } from '../errors.js';
import { execTool, type ExecResult } from '../util/exec.js';

export class BpftoolError extends SockmeshError {
  readonly result: ExecResult;

  constructor(args: string[], result: ExecResult) {
    const msg = (result.stderr || result.stdout).trim().split('\n').slice(-6).join('\n');
    super(Codes.BPFTOOL, `bpftool ${args.join(' ')} failed (exit ${result.code}):\n${msg}`);
    this.name = 'BpftoolError';
    this.result = result;
  }
}

export async function bpftool(args: string[]): Promise<string> {
  let result: ExecResult;
  try {
    result = await execTool('bpftool', args);
  } catch (cause) {
    throw new SockmeshError(Codes.BPFTOOL, 'cannot run bpftool: install it (Debian: apt-get install bpftool)', { cause });
  }
  if (result.code !== 0) throw new BpftoolError(args, result);
  return result.stdout;
}

export async function bpftoolJson<T>(args: string[]): Promise<T> {
  const out = await bpftool(['-j', ...args]);
  return (out.trim() ? JSON.parse(out) : []) as T;
}
