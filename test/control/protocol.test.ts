// The control protocol's boundary: each request line is parsed and checked before the agent sees
// it; anything malformed is refused with a message naming the field, and nothing else gets through.
import { describe, expect, it } from 'vitest';
import { parseRequest, ROOT_OPS, socketPath } from '../../src/control/protocol.js';
import { SockmeshError } from '../../src/errors.js';

function refused(line: string): string {
  try {
    parseRequest(line);
  } catch (e) {
    expect(e).toBeInstanceOf(SockmeshError);
    return (e as Error).message;
  }
  throw new Error(`accepted: ${line}`);
}

describe('control requests', () => {
  it('parses each op to exactly its fields', () => {
    expect(parseRequest('{"op":"status"}')).toEqual({ op: 'status' });
    expect(parseRequest('{"op":"service","name":"reviews","redirect":false}')).toEqual({ op: 'service', name: 'reviews', redirect: false });
    expect(parseRequest('{"op":"reset","name":"reviews.default"}')).toEqual({ op: 'reset', name: 'reviews.default' });
    expect(parseRequest('{"op":"policy","have":3,"sidecar":{"id":"pod-a:1","version":2}}')).toEqual({ op: 'policy', have: 3, sidecar: { id: 'pod-a:1', version: 2 } });
    expect(parseRequest('{"op":"policy","have":3,"sidecar":{"id":"s","version":2,"refused":4}}')).toEqual({ op: 'policy', have: 3, sidecar: { id: 's', version: 2, refused: 4 } });
    expect(parseRequest('{"op":"policy","have":3,"epoch":"7f3c-a","sidecar":{"id":"s","version":2}}')).toMatchObject({ epoch: '7f3c-a' });
    expect(() => parseRequest('{"op":"policy","have":3,"epoch":"a b","sidecar":{"id":"s","version":2}}')).toThrow(/epoch/);
    expect(parseRequest('{"op":"wait"}')).toEqual({ op: 'wait', timeoutMs: 30_000 });
    expect(parseRequest('{"op":"wait","timeoutMs":0}')).toEqual({ op: 'wait', timeoutMs: 0 });
    expect(parseRequest('{"op":"identity"}')).toEqual({ op: 'identity', have: '' });
    expect(parseRequest('{"op":"identity","have":"7C71A0"}')).toEqual({ op: 'identity', have: '7C71A0' });
  });

  it.each([
    ['not JSON', 'status', /not JSON/],
    ['an array', '[{"op":"status"}]', /JSON object/],
    ['null', 'null', /JSON object/],
    ['an unknown op', '{"op":"shutdown"}', /unknown op "shutdown" \(status, service, reset, policy, wait, identity\)/],
    ['no op', '{}', /unknown op undefined/],
    ['an extra field', '{"op":"status","as":"root"}', /unknown field "as" for op status/],
    ['a service name that is no DNS name', '{"op":"service","name":"../x","redirect":true}', /name must be a service name/],
    ['a redirect that is not a boolean', '{"op":"service","name":"a","redirect":"false"}', /redirect must be true or false/],
    ['a reset without a name', '{"op":"reset"}', /name must be a service name/],
    ['a negative policy version', '{"op":"policy","have":-1,"sidecar":{"id":"s","version":1}}', /have must be a policy version/],
    ['a sidecar id with a slash', '{"op":"policy","have":0,"sidecar":{"id":"a/b","version":1}}', /sidecar must be/],
    ['a fractional refused version', '{"op":"policy","have":0,"sidecar":{"id":"s","version":1,"refused":1.5}}', /sidecar.refused/],
    ['a wait longer than 30 s', '{"op":"wait","timeoutMs":30001}', /timeoutMs must be an integer from 0 to 30000/],
    ['a wait of a string', '{"op":"wait","timeoutMs":"5"}', /timeoutMs/],
    ['an identity request naming a pod', '{"op":"identity","pod":"other"}', /unknown field "pod" for op identity/],
    ['an identity serial that is no hex', '{"op":"identity","have":"../../x"}', /have must be the serial number/],
  ])('refuses %s', (_what, line, message) => {
    expect(refused(line)).toMatch(message);
  });

  it('needs root for everything but what a pod asks about itself (wait, identity)', () => {
    expect([...ROOT_OPS].sort()).toEqual(['policy', 'reset', 'service', 'status']);
    expect(ROOT_OPS.has('wait')).toBe(false);
    expect(ROOT_OPS.has('identity')).toBe(false);
  });

  it('puts each instance\'s socket in the state directory', () => {
    expect(socketPath('default', '/run/sockmesh')).toBe('/run/sockmesh/default.sock');
  });
});
