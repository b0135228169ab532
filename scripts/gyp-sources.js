#!/usr/bin/env node
// Prints the native source list of native/sources.cmake (one path per line) for binding.gyp,
// so node-gyp and CMake always compile the same files. Usage: gyp-sources.js core|addon|all
const fs = require('fs');
const path = require('path');
const text = fs.readFileSync(path.join(__dirname, '..', 'native', 'sources.cmake'), 'utf8');
const want = process.argv[2] || 'all';
const lists = {};
for (const m of text.matchAll(/set\((DFLASH_\w+_SOURCES)([^)]*)\)/g)) {
  lists[m[1]] = m[2].split(/\s+/).filter((s) => s && !s.startsWith('#'));
}
const core = lists.DFLASH_CORE_SOURCES || [];
const addon = lists.DFLASH_ADDON_SOURCES || [];
const out = want === 'core' ? core : want === 'addon' ? addon : [...core, ...addon];
process.stdout.write(out.join('\n') + '\n');
