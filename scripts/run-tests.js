#!/usr/bin/env node
// The test command (`npm test`): builds and runs the C++ unit tests (GoogleTest) against the CPU
// PJRT plugin, then the vitest suite (then, in CI, the lockfile and npm-path checks), and ends
// with one summary line "N passed, N failed".
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });

function findCpuPlugin() {
  if (process.env.DFLASH_PJRT_PLUGIN) return process.env.DFLASH_PJRT_PLUGIN;
  const lib = path.join(root, '.venv', 'lib');
  for (const py of fs.existsSync(lib) ? fs.readdirSync(lib) : []) {
    const p = path.join(lib, py, 'site-packages', 'lammps_jax_pjrt_cpu', 'pjrt_c_api_cpu_plugin.so');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('no CPU PJRT plugin in ./.venv: run `bash scripts/setup.sh` first');
}

let passed = 0;
let failed = 0;
const plugin = findCpuPlugin();
const env = { ...process.env, DFLASH_PJRT_PLUGIN: plugin };

// 1. C++ unit tests.
const jobs = String(Math.max(1, os.cpus().length));
// The C++ tests link the addon's own core: where `npm install` configured build/ (cmake-js), the
// same build directory adds the test targets and only their sources compile (the core is not
// built a second time); otherwise a build directory of their own.
const addonBuilt = fs.existsSync(path.join(root, 'build', 'CMakeCache.txt'));
const buildDir = path.join(root, addonBuilt ? 'build' : 'build-tests');
const configure = addonBuilt ? ['-S', '.', '-B', buildDir, '-DDFLASH_TESTS=ON']
  : ['-S', '.', '-B', buildDir, '-G', 'Ninja', '-DDFLASH_TESTS=ON', '-DCMAKE_BUILD_TYPE=Release'];
let r = run('cmake', configure, { stdio: ['ignore', 'ignore', 'inherit'] });
if (r.status === 0) r = run('cmake', ['--build', buildDir, '--parallel', jobs, '--target', 'dflash_native_tests', 'pjrt_run']);
if (r.status !== 0) {
  console.error('native tests: build failed');
  failed += 1;
} else {
  const xml = path.join(buildDir, 'gtest.xml');
  r = run(path.join(buildDir, 'native', 'tests', 'dflash_native_tests'), [`--gtest_output=xml:${xml}`], { env });
  const text = fs.existsSync(xml) ? fs.readFileSync(xml, 'utf8') : '';
  const m = text.match(/<testsuites tests="(\d+)" failures="(\d+)" disabled="\d+" errors="(\d+)"/);
  if (m) {
    passed += Number(m[1]) - Number(m[2]) - Number(m[3]);
    failed += Number(m[2]) + Number(m[3]);
  } else failed += 1;
  if (r.status !== 0 && !(m && Number(m[2]) + Number(m[3]) > 0)) failed += 1;
  // The Node-free driver used on GPU hosts must pass on the CPU plugin too.
  r = run(path.join(buildDir, 'native', 'tests', 'pjrt_run'), [plugin]);
  if (r.status === 0) passed += 1;
  else failed += 1;
}

// 2. TypeScript build (the CLI tests run the compiled package), then vitest.
r = run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json']);
if (r.status !== 0) {
  console.error('tsc failed');
  failed += 1;
}
const json = path.join(os.tmpdir(), `dflash-vitest-${process.pid}.json`);
r = run(process.execPath, [require.resolve('vitest/vitest.mjs'), 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${json}`, ...process.argv.slice(2)], { env });
if (fs.existsSync(json)) {
  const res = JSON.parse(fs.readFileSync(json, 'utf8'));
  passed += res.numPassedTests;
  failed += res.numFailedTests;
  if (res.numTotalTests === 0) failed += 1;
  fs.unlinkSync(json);
} else failed += 1;
if (r.status !== 0 && failed === 0) failed += 1;

// 3. CI only (CI=true, or DFLASH_NPM_PATH=1 by hand): `npm install` left package-lock.json as
// committed (a lockfile missing other platforms' optional packages gets rewritten on every
// install), the npm user's path (pack -> install without a compiler -> install-plugin -> demo),
// and the API reference build.
if (process.env.CI === 'true' || process.env.DFLASH_NPM_PATH === '1') {
  r = run('git', ['diff', '--exit-code', '--stat', '--', 'package-lock.json']);
  if (r.status === 0) passed += 1;
  else {
    console.error('package-lock.json changed during npm install: commit the lockfile npm writes (see README, Build layout)');
    failed += 1;
  }
  r = run('bash', [path.join('scripts', 'ci-npm-path.sh')]);
  if (r.status === 0) passed += 1;
  else failed += 1;
  // The API reference (TypeDoc, into docs/api) still builds from the sources.
  r = run('npm', ['run', '--silent', 'docs']);
  if (r.status === 0) passed += 1;
  else failed += 1;
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
