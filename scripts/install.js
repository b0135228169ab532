#!/usr/bin/env node
// npm "install" hook: use a prebuild that node-gyp-build can load for this platform, otherwise
// build the addon from source with cmake-js (the one build description, CMakeLists.txt).
const { spawnSync } = require('child_process');
const path = require('path');
const fs = require('fs');

const root = path.join(__dirname, '..');
const fromSource =
  process.env.npm_config_build_from_source === 'true' || fs.existsSync(path.join(root, '.git'));

if (!fromSource) {
  try {
    require('node-gyp-build')(root);
    process.exit(0);
  } catch (_) {
    // No usable prebuild: fall through to a source build.
  }
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const args = [cmakeJs, 'build', '--out', 'build', '--parallel', String(require('os').cpus().length)];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);
