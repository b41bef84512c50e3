#!/usr/bin/env node
// Entry point for `npx sockmesh`: runs the compiled CLI (npm run build writes dist/).
import { main } from '../dist/src/cli.js';

process.exitCode = await main(process.argv);
