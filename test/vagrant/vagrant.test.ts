// The Vagrant VM for users: the Vagrantfile is valid, and provisioning installs exactly what the
// README's set-up command installs (both go through scripts/deps.sh).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/util/paths.js';
import { missingTools, requirementsOrSkip } from '../helpers/privileged.js';

const root = packageRoot();
const read = (p: string) => readFileSync(join(root, p), 'utf8');

describe('provisioning', () => {
  it('installs what the set-up command installs, through the same script', () => {
    const provision = read('vagrant/provision.sh');
    const quickstart = read('scripts/quickstart');
    expect(provision).toMatch(/^bash \/vagrant\/scripts\/deps\.sh$/m);
    expect(quickstart).toMatch(/^bash scripts\/deps\.sh$/m);
    // Beyond deps.sh, provisioning only brings Node.js 20 (Debian 12 ships 18).
    const installs = [...provision.matchAll(/apt-get install -y -qq (.+)$/gm)].map((m) => m[1].trim());
    expect(installs).toEqual(['ca-certificates curl gnupg', 'nodejs']);
    expect(read('scripts/deps.sh')).toMatch(/lists=scripts\/debian-packages\.txt/);
    expect(read('vagrant/Vagrantfile')).toMatch(/config\.vm\.provision "shell", path: "provision\.sh"/);
  });
});

const reason = missingTools(['vagrant']);

describe.skipIf(requirementsOrSkip(reason))('vagrant validate', () => {
  it('accepts the Vagrantfile', () => {
    const r = spawnSync('vagrant', ['validate', '--ignore-provider'], {
      cwd: join(root, 'vagrant'), encoding: 'utf8', timeout: 120_000,
      env: { ...process.env, VAGRANT_CHECKPOINT_DISABLE: '1', VAGRANT_HOME: join(root, '.cache', 'vagrant-home') },
    });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.stdout).toMatch(/Vagrantfile validated successfully/);
    expect(r.status).toBe(0);
  });
});
