import { defineConfig } from 'vitest/config';
import { slow } from './test/helpers/slow.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: slow(120_000),
    hookTimeout: slow(60_000),
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
