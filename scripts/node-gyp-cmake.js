#!/usr/bin/env node
// A node-gyp stand-in for prebuildify (`prebuildify --node-gyp scripts/node-gyp-cmake.js`).
// prebuildify can only drive node-gyp; this shim translates its `rebuild` call into a cmake-js
// build so prebuilds come from CMakeLists.txt, the same build as `npm install`. The addon uses
// N-API only, so the --target/--devdir header options need no translation. It runs `cmake-js
// build`, not `rebuild`: the build directory npm install configured is reused, and CMake's
// dependency tracking makes the result what a clean build would produce, in seconds.
const { spawnSync } = require('child_process');
const path = require('path');

const argv = process.argv.slice(2);
if (argv[0] !== 'rebuild') {
  console.error(`node-gyp-cmake: only "rebuild" is supported (got ${argv.join(' ')})`);
  process.exit(2);
}
const arch = (argv.find((a) => a.startsWith('--arch=')) || '').slice('--arch='.length);
const debug = argv.includes('--debug');
const args = [require.resolve('cmake-js/bin/cmake-js'), 'build', '--out', 'build',
  '--config', debug ? 'Debug' : 'Release'];
if (arch) args.push('--arch', arch);
const r = spawnSync(process.execPath, args, { cwd: path.join(__dirname, '..'), stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);
