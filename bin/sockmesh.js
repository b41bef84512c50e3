#!/usr/bin/env node
// Entry point for `npx sockmesh`: runs the compiled CLI (npm run build writes dist/).
import { main } from '../dist/src/cli.js';

// `sockmesh … | head`: a reader that went away is not an error of ours.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

process.exitCode = await main(process.argv);
