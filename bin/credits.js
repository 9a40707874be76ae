#!/usr/bin/env node
'use strict';
// Runs the compiled CLI (`npm run build` writes dist/). `npm start` and
// `npm test` build first.
const path = require('node:path');
const fs = require('node:fs');

const compiled = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
if (!fs.existsSync(compiled)) {
  console.error(`credits: ${compiled} is not built yet: run npm run build (npm start and npm test build first).`);
  process.exit(1);
}
require(compiled)
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
    // On failure, exit now rather than wait for whatever a half-done start
    // left open (a pool still retrying) to let the process end by itself.
    if (code !== 0) process.exit(code);
  });
