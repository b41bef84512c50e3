// A running agent's listed pods are never turned into the single-pod form (all of --cgroup as one
// pod) by an edit: a file cut short loses its pods: section, and that version is refused.
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { formChange } from '../../src/config/form-change.js';

const listed = parseConfigText('services: []\npods:\n  - { name: a, cgroup: a, netns: sm-a }\n  - { name: b, cgroup: b, netns: sm-b }\n', 't');
const none = parseConfigText('services: []\n', 't');
const emptyList = parseConfigText('services: []\npods: []\n', 't');

describe('formChange', () => {
  it('refuses a version that lists no pods after one that listed some, naming what to do', () => {
    const p = formChange(listed, none, '/sys/fs/cgroup/unified/kubepods');
    expect(p?.path).toBe('pods');
    expect(p?.message).toMatch(/lists no pods, the applied one lists 2: applied, it would mesh all of \/sys\/fs\/cgroup\/unified\/kubepods as one pod/);
    // `pods: []` is the same single-pod form.
    expect(formChange(listed, emptyList, '/c')?.path).toBe('pods');
  });

  it('lets through: the first version, a listed form staying listed, a cluster\'s state with no pod left, the single-pod form staying so', () => {
    expect(formChange(undefined, none, '/c')).toBeUndefined();
    expect(formChange(listed, listed, '/c')).toBeUndefined();
    expect(formChange(listed, { ...emptyList, podsOnly: true }, '/c')).toBeUndefined();
    expect(formChange(none, none, '/c')).toBeUndefined();
  });
});
