// Which endpoints an apply takes from services that close their connections when it does
// (terminateOnRemove): only those services, only endpoints that left, by service id.
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { removedEndpoints } from '../../src/plan/removed.js';

const config = (eps: string, extra = '') => parseConfigText(`
services:
  - { name: db, addresses: [10.96.0.30], ports: [5432], mode: kernel, terminateOnRemove: true, endpoints: [${eps}] }
  - { name: cache, addresses: [10.96.0.31], ports: [6379], mode: kernel, endpoints: [${eps}] }
${extra}`, 't');

describe('removedEndpoints', () => {
  const ids = { db: 3, cache: 4 };

  it('names the endpoints that left a terminateOnRemove service, with its id and port (0: any)', () => {
    const before = config("'10.244.0.9:5432', 10.244.0.10, { address: '10.244.0.11:5433', weight: 2 }");
    const after = config("'10.244.0.11:5433'");
    expect(removedEndpoints(before, after, ids)).toEqual([
      { service: 'db', serviceId: 3, address: '10.244.0.9', port: 5432 },
      { service: 'db', serviceId: 3, address: '10.244.0.10', port: 0 },
    ]);
  });

  it('an endpoint whose port changed left (the old address:port carries the old connections)', () => {
    expect(removedEndpoints(config("'10.244.0.9:5432'"), config("'10.244.0.9:6432'"), ids))
      .toEqual([{ service: 'db', serviceId: 3, address: '10.244.0.9', port: 5432 }]);
  });

  it('nothing without a previous config, when nothing left, or for services without terminateOnRemove', () => {
    const two = config('{ address: 10.244.0.9 }, { address: 10.244.0.10 }');
    expect(removedEndpoints(undefined, two, ids)).toEqual([]);
    expect(removedEndpoints(two, two, ids)).toEqual([]);
    const cacheOnly = removedEndpoints(two, config('{ address: 10.244.0.9 }'), ids).map((r) => r.service);
    expect(cacheOnly).toEqual(['db']);
  });

  it('a service that was in sidecar mode before has no endpoints to close', () => {
    const before = parseConfigText('services:\n  - { name: db, addresses: [10.96.0.30], ports: [5432] }\n', 't');
    expect(removedEndpoints(before, config('{ address: 10.244.0.9 }'), ids)).toEqual([]);
  });
});
