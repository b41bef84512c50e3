// The governance sidecars' policy feed: a version per change of the services or the sidecar
// identity, a long poll answered at once when the sidecar lacks the current version and else when
// the next one comes; a refused version is not sent again; stopping answers the waiting polls.
import { describe, expect, it } from 'vitest';
import { PolicyFeed } from '../../src/agent/policy-feed.js';
import { parseConfigText } from '../../src/config/load.js';
import { createLogger } from '../../src/util/log.js';

const log = createLogger({ level: 'silent' });
const config = (port: number) => parseConfigText(`services:\n  - { name: a, addresses: [10.96.0.20], ports: [${port}] }\npods:\n  - { name: p, cgroup: p, netns: sm-p }\n`, 't');
/** A sidecar's poll with the version (of this agent's run: its epoch) it has. */
const poll = (feed: PolicyFeed, have: number, refused?: number, epoch = feed.epoch) => feed.poll({ op: 'policy', have, epoch, sidecar: { id: 's1', version: 1, ...(refused !== undefined ? { refused } : {}) } });

describe('PolicyFeed', () => {
  it('versions only real changes, and hands out the policy without the pods', async () => {
    const feed = new PolicyFeed(log);
    feed.publish(config(9080));
    feed.publish(config(9080));
    expect(feed.version).toBe(1);
    const r = await poll(feed, 0);
    expect(r.version).toBe(1);
    expect(r.config?.services.map((s) => s.ports)).toEqual([[9080]]);
    expect(r.config?.pods).toEqual([]);
    feed.publish(config(9081));
    expect(feed.version).toBe(2);
  });

  it('a sidecar that has the current version waits for the next one', async () => {
    const feed = new PolicyFeed(log);
    feed.publish(config(9080));
    let answered: { version: number } | undefined;
    const waiting = poll(feed, 1).then((r) => { answered = r; });
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBeUndefined();
    feed.publish(config(9081));
    await waiting;
    expect(answered).toMatchObject({ version: 2 });
  });

  it('a refused version is not sent again; stop answers the waiting poll with no config', async () => {
    const feed = new PolicyFeed(log);
    feed.publish(config(9080));
    feed.publish(config(9081));
    let answered: { version: number; config?: unknown } | undefined;
    const waiting = poll(feed, 1, 2).then((r) => { answered = r; });
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBeUndefined();
    feed.stop();
    await waiting;
    expect(answered).toEqual({ version: 2, epoch: feed.epoch });
    // Once stopped, a poll is answered at once.
    expect(await poll(feed, 2)).toEqual({ version: 2, epoch: feed.epoch });
  });

  it('a version of another agent\'s run is not this one: answered at once with the policy, whatever its number', async () => {
    const feed = new PolicyFeed(log);
    feed.publish(config(9080));
    // A sidecar that ran version 1 of the agent before this one (restarted): it gets this run's version 1.
    const r = await poll(feed, 1, undefined, 'an-earlier-agent');
    expect(r).toMatchObject({ version: 1, epoch: feed.epoch });
    expect(r.config?.services.map((x) => x.ports)).toEqual([[9080]]);
  });

  it('lists the sidecars heard from, with the version each runs and refused', async () => {
    const feed = new PolicyFeed(log);
    feed.publish(config(9080));
    await poll(feed, 0, 0);
    expect(feed.live()).toEqual([expect.objectContaining({ id: 's1', version: 1, agentVersion: 0, refused: 0 })]);
  });
});
