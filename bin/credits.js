#!/usr/bin/env node
'use strict';
// Runs the compiled CLI (`npm run build` writes dist/). `npm start` and
// `npm test` build first.
require('../dist/src/cli/main.js')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
    // On failure, exit now rather than wait for whatever a half-done start
    // left open (a pool still retrying) to let the process end by itself.
    if (code !== 0) process.exit(code);
  });
