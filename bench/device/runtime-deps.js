#!/usr/bin/env node
// Prints, one per line and relative to the package root, the node_modules directories the
// compiled package needs at run time: the closure of package.json's "dependencies" resolved the
// way Node resolves them (nearest node_modules upwards), without optional dependencies (the only
// one, rxjs under typed-emitter, is for types) and without the build-only packages named on the
// command line (cmake-js: the device kit runs CMake itself). pack-node.sh tars this list.
//   node bench/device/runtime-deps.js ROOT [SKIP...]
const fs = require('fs');
const path = require('path');

const root = path.resolve(process.argv[2] || '.');
const skip = new Set(process.argv.slice(3));
const seen = new Set();

function resolvePackage(name, fromDir) {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === path.dirname(dir)) return null;
  }
}

function walk(dir) {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  for (const name of Object.keys(pkg.dependencies || {})) {
    if (skip.has(name)) continue;
    const found = resolvePackage(name, dir);
    if (!found) {
      console.error(`runtime-deps: ${name} (needed by ${path.relative(root, dir) || 'the package'}) is not installed: run npm install`);
      process.exitCode = 1;
      continue;
    }
    if (seen.has(found)) continue;
    seen.add(found);
    walk(found);
  }
}

walk(root);
for (const dir of [...seen].sort()) console.log(path.relative(root, dir));
