// `dflash install-plugin`: wheel choice by file name tags, download with the sha256 checked,
// unpacking into the directory discovery searches, idempotence, and the command line, against a
// local PEP 691 index (127.0.0.1) serving a wheel made here around the real CPU plugin. The real
// PyPI download is exercised by scripts/ci-npm-path.sh. Also: the pins agree with the
// requirements files that set up the test environments.
import { spawn, spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { native } from '../lib/native';
import { installPlugin, RECIPES } from '../lib/plugin-install';
import { describePlugins, findPlugin } from '../lib/plugins';
import { chooseWheel, WheelFile } from '../lib/wheels';

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js');
const REAL = findPlugin({ env: { DFLASH_PJRT_PLUGIN: process.env.DFLASH_PJRT_PLUGIN } }).path;
const SCRATCH = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-install-'));
const CPU = RECIPES.cpu;
const WHEEL = `lammps_jax_pjrt_cpu-${CPU.wheel.version}-py3-none-manylinux_2_27_x86_64.whl`;

let server: http.Server;
let index = '';
let wheelSha = '';
let corrupt = false;  // when set, the index advertises a wrong sha256
const served: string[] = [];

beforeAll(async () => {
  // A wheel (a zip; stored, not deflated, to keep this quick) holding the real plugin.
  const r = spawnSync('python3', ['-c', `
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED) as z:
    z.write(sys.argv[2], 'lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so')
    z.writestr('lammps_jax_pjrt_cpu/__init__.py', 'PLUGIN_PATH = None\\n')
    z.writestr('lammps_jax_pjrt_cpu-${CPU.wheel.version}.dist-info/METADATA', 'Name: lammps-jax-pjrt-cpu\\n')
`, path.join(SCRATCH, WHEEL), REAL]);
  expect(r.status, String(r.stderr)).toBe(0);
  wheelSha = createHash('sha256').update(fs.readFileSync(path.join(SCRATCH, WHEEL))).digest('hex');
  server = http.createServer((req, res) => {
    served.push(req.url!);
    if (req.url === '/simple/lammps-jax-pjrt-cpu/') {
      const file = (filename: string, sha: string) => ({ filename, url: `../../files/${filename}`, hashes: { sha256: sha } });
      res.setHeader('content-type', 'application/vnd.pypi.simple.v1+json');
      res.end(JSON.stringify({ files: [
        file(`lammps_jax_pjrt_cpu-0.0.1-py3-none-manylinux_2_27_x86_64.whl`, 'aa'),
        file(WHEEL.replace('x86_64', 'aarch64'), 'bb'),
        file(WHEEL, corrupt ? '0'.repeat(64) : wheelSha),
      ] }));
    } else if (req.url === `/files/${WHEEL}`) {
      fs.createReadStream(path.join(SCRATCH, WHEEL)).pipe(res);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  index = `http://127.0.0.1:${(server.address() as AddressInfo).port}/simple`;
});

afterAll(() => {
  server?.close();
  fs.rmSync(SCRATCH, { recursive: true, force: true });
});

describe('wheel choice', () => {
  const w = (filename: string): WheelFile => ({ filename, url: filename, sha256: 'x' });
  it('takes the manylinux wheel of this architecture, py3-none before CPython-specific builds', () => {
    const files = ['libtpu-1-cp311-cp311-manylinux_2_31_x86_64.whl', 'libtpu-1-cp313-cp313-manylinux_2_31_x86_64.whl',
      'libtpu-1-cp313-cp313t-manylinux_2_31_x86_64.whl', 'libtpu-1-cp313-cp313-manylinux_2_31_aarch64.whl', 'libtpu-1-cp313-cp313-win_amd64.whl'].map(w);
    expect(chooseWheel(files, 'x86_64')!.filename).toBe('libtpu-1-cp313-cp313-manylinux_2_31_x86_64.whl');
    expect(chooseWheel(files, 'aarch64')!.filename).toBe('libtpu-1-cp313-cp313-manylinux_2_31_aarch64.whl');
    expect(chooseWheel([...files, w('libtpu-1-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl')], 'x86_64')!.filename)
      .toBe('libtpu-1-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl');
    expect(chooseWheel(files, 'ppc64le')).toBeUndefined();
  });
});

describe('installPlugin against a local index', () => {
  const dir = () => path.join(SCRATCH, 'plugins');
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);

  it('installs into <dir>/cpu, where discovery selects it; the plugin loads', async () => {
    const r = await installPlugin('cpu', { dir: dir(), indexUrl: index, log });
    expect(r).toMatchObject({ kind: 'cpu', installed: true, dir: path.join(dir(), 'cpu'), plugin: path.join(dir(), 'cpu', CPU.pluginFile) });
    expect(served).toContain(`/files/${WHEEL}`);
    expect(fs.statSync(r.plugin).size).toBe(fs.statSync(REAL).size);
    expect(lines.join('\n')).toMatch(new RegExp(`fetched ${WHEEL.replace(/\./g, '\\.')} .*sha256 checked`));
    expect(lines[lines.length - 1]).toBe(`installed lammps-jax-pjrt-cpu ${CPU.wheel.version} (${CPU.note}) in ${path.join(dir(), 'cpu')}`);
    expect(native().probePlugin(r.plugin)).toMatchObject({ apiMajor: 0, apiMinor: Number(CPU.pjrtApi.split('.')[1]) });
    const report = describePlugins({ env: {}, python: false, sitePackages: [], installDir: dir() });
    expect(report.selected).toBe(r.plugin);
    expect(fs.readdirSync(dir())).toEqual(['cpu']);  // no staging directory left behind
  });

  it('is idempotent: the same versions in place fetch nothing; --force fetches again', async () => {
    served.length = 0;
    const again = await installPlugin('cpu', { dir: dir(), indexUrl: index, log });
    expect(again.installed).toBe(false);
    expect(served).toEqual([]);
    expect(lines[lines.length - 1]).toMatch(/is already installed in .*\(--force reinstalls\)/);
    expect((await installPlugin('cpu', { dir: dir(), indexUrl: index, log, force: true })).installed).toBe(true);
    expect(served).toContain(`/files/${WHEEL}`);
  });

  it('a download whose sha256 differs from the index is refused, and the old install stays', async () => {
    corrupt = true;
    try {
      await expect(installPlugin('cpu', { dir: dir(), indexUrl: index, log, force: true }))
        .rejects.toThrow(new RegExp(`download of ${WHEEL.replace(/\./g, '\\.')} is corrupt: sha256 ${wheelSha}, the index says 0{64}`));
    } finally {
      corrupt = false;
    }
    expect(fs.statSync(path.join(dir(), 'cpu', CPU.pluginFile)).size).toBe(fs.statSync(REAL).size);
    expect(fs.readdirSync(dir())).toEqual(['cpu']);
  });

  it('errors name what is missing: an unknown kind, a version the index lacks, an unreachable index', async () => {
    await expect(installPlugin('rocm' as never, { dir: dir(), indexUrl: index })).rejects.toThrow(/unknown plugin kind "rocm": expected cpu, cuda or tpu/);
    await expect(installPlugin('tpu', { dir: dir(), indexUrl: index })).rejects.toThrow(/the Python package index answered 404 for http:\/\/127\.0\.0\.1:\d+\/simple\/libtpu\//);
    await expect(installPlugin('cpu', { dir: path.join(SCRATCH, 'other'), indexUrl: 'http://127.0.0.1:1/simple' })).rejects.toThrow(/cannot reach the Python package index at http:\/\/127\.0\.0\.1:1\/simple\/lammps-jax-pjrt-cpu\//);
  });
});

describe('the command line', () => {
  // Asynchronous: the index is served by this process.
  function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [CLI, ...args], { env });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stderr += d));
      p.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it('install-plugin cpu prints what it did and where; doctor then shows the installed plugin selected', async () => {
    const env = { ...process.env, DFLASH_CACHE_DIR: path.join(SCRATCH, 'cache'), DFLASH_INDEX_URL: index };
    delete env.DFLASH_PJRT_PLUGIN;
    const plugin = path.join(SCRATCH, 'cache', 'plugins', 'cpu', CPU.pluginFile);
    const first = await cli(['install-plugin', 'cpu'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain(`installed lammps-jax-pjrt-cpu ${CPU.wheel.version}`);
    expect(first.stdout).toContain(`installed: ${plugin} (PJRT C API ${CPU.pjrtApi})`);
    expect(first.stdout).toContain('discovery selects it');
    const second = await cli(['install-plugin', 'cpu'], env);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`already installed: ${plugin}`);
    const doctor = await cli(['doctor'], env);
    expect(doctor.code, doctor.stderr).toBe(0);
    expect(doctor.stdout).toContain(`* dflash install-plugin cpu: ${plugin} (selected)`);
    expect(doctor.stdout).toMatch(/client: cpu .*device/);
  });

  it('install-plugin without a kind lists the kinds and their pinned packages', async () => {
    const r = await cli(['install-plugin'], process.env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/install-plugin needs a kind: cpu \(lammps-jax-pjrt-cpu 0\.11\.2: .*\); tpu \(libtpu .*\); cuda \(jax-cuda13-pjrt/);
  });
});

describe('pins', () => {
  const pins = (file: string) => Object.fromEntries(fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n')
    .filter((l) => /^[\w.-]+==/.test(l)).map((l) => l.trim().split('==')));
  it('install-plugin fetches the versions the test environments use', () => {
    expect(pins('requirements.txt')[CPU.wheel.name]).toBe(CPU.wheel.version);
    const accel = pins('requirements-plugins.txt');
    expect(accel[RECIPES.tpu.wheel.name]).toBe(RECIPES.tpu.wheel.version);
    expect(accel[RECIPES.cuda.wheel.name]).toBe(RECIPES.cuda.wheel.version);
  });
});
