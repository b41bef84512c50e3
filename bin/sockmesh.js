#!/usr/bin/env node
// Entry point for `npx sockmesh`: runs the compiled CLI (npm run build writes dist/).
// The long-running agent first restarts itself in place with its memory settings (same pid).
if (process.argv[2] === 'agent') {
  const { reexecTuned } = await import('../dist/src/util/memory.js');
  const problem = await reexecTuned();
  if (problem) process.stderr.write(`sockmesh: ${problem}\n`);
}
const { main } = await import('../dist/src/cli.js');

// `sockmesh … | head`: a reader that went away is not an error of ours.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

process.exitCode = await main(process.argv);
