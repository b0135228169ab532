#!/usr/bin/env node
// npm "install" hook: use a prebuild that node-gyp-build can load for this platform (the package
// tarball ships prebuilds/linux-x64), otherwise build the addon from source with cmake-js (the one
// build description, CMakeLists.txt), saying why and what the source build needs.
const { spawnSync } = require('child_process');
const path = require('path');
const fs = require('fs');

const root = path.join(__dirname, '..');
const inCheckout = fs.existsSync(path.join(root, '.git'));
const forced = process.env.npm_config_build_from_source === 'true';
const say = (line) => process.stderr.write(`dflash: ${line}\n`);

if (!inCheckout && !forced) {
  try {
    require('node-gyp-build')(root);
    process.exit(0);
  } catch (e) {
    const shipped = fs.existsSync(path.join(root, 'prebuilds')) ? fs.readdirSync(path.join(root, 'prebuilds')).join(', ') : 'none';
    say(`no prebuilt addon loads on ${process.platform}-${process.arch} (prebuilds in this package: ${shipped}; ` +
      `${String(e.message).split('\n')[0]})`);
    say('building it from source instead: this needs cmake >= 3.20 and a C++20 compiler (g++ >= 11 or clang >= 14)');
  }
} else if (forced) {
  say('building from source (--build-from-source)');
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const args = [cmakeJs, 'build', '--out', 'build', '--parallel', String(require('os').cpus().length)];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  const cmake = spawnSync('cmake', ['--version'], { stdio: 'ignore' });
  const missing = cmake.error ? ' cmake was not found on PATH.' : '';
  say(`the source build failed.${missing} Install cmake and a C++20 compiler ` +
    '(Debian/Ubuntu: apt-get install cmake g++), or use a platform with a prebuild (linux-x64).');
}
process.exit(r.status === null ? 1 : r.status);
