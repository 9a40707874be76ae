import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { SERVER_NODE_FLAGS, startScriptNodeFlags } from '../../bench/processes';

/**
 * The bench runs the server with the node flags of `npm start` (read from
 * package.json), so that what it measures is the server as it is run, and a
 * change of those flags is one edit.
 */
describe('bench server flags (unit)', () => {
  it("are package.json's start script's", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { scripts: { start: string } };
    expect(pkg.scripts.start).to.contain(`node ${SERVER_NODE_FLAGS.join(' ')} bin/credits.js serve`);
    expect(SERVER_NODE_FLAGS).to.include('--max-semi-space-size=16');
    expect(SERVER_NODE_FLAGS.some((flag) => flag.startsWith('--heap-growing-percent='))).to.equal(true);
  });

  it('reads the flags of a start script, none, or refuses one of another shape', () => {
    expect(startScriptNodeFlags('npm run build --silent && node --a=1 --b bin/credits.js serve')).to.deep.equal(['--a=1', '--b']);
    expect(startScriptNodeFlags('node bin/credits.js serve')).to.deep.equal([]);
    expect(() => startScriptNodeFlags('npm run build && ts-node src/main.ts')).to.throw(/does not end "node \[flags\] bin\/credits.js serve"/);
  });
});
