// The TPU (libtpu) and CUDA (jax-cuda13-pjrt) plugins on a machine with neither device: the real
// wheels, installed by scripts/setup.sh into ./.venv-plugins, are found by discovery, load, report
// their PJRT C API version and attributes, and creating a client ends in a clear JS error within
// seconds (no metadata-server hang, no crash, no signal at exit). Also: a TPU held by another
// process is named in the error. Every load runs in a child process of the compiled package:
// libtpu leaves threads and profiling timers behind that must not share the test runner.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { describePlugins } from '../lib/plugins';

const ROOT = path.join(__dirname, '..');
const DIST = path.join(ROOT, 'dist', 'lib');
const VENV_LIB = path.join(ROOT, '.venv-plugins', 'lib');
const SITE = fs.existsSync(VENV_LIB)
  ? path.join(VENV_LIB, fs.readdirSync(VENV_LIB).find((n) => n.startsWith('python3'))!, 'site-packages')
  : '';
const PYTHON = path.join(ROOT, '.venv-plugins', 'bin', 'python');

// Loads a plugin, probes it, tries a client; prints what happened and how long it took.
const LOAD = `
const dist = process.argv[1], plugin = process.argv[2];
const { native } = require(dist + '/native.js');
const { Client } = require(dist + '/index.js');
const t0 = Date.now();
const out = {};
try { out.probe = native().probePlugin(plugin); } catch (e) { out.probeError = e.message; }
Client.open({ plugin }).then(
  (c) => { out.platform = c.platformName; c.dispose(); },
  (e) => { out.error = { message: e.message, code: e.code, isError: e instanceof Error }; },
).finally(() => {
  out.seconds = (Date.now() - t0) / 1000;
  out.skipMds = process.env.TPU_SKIP_MDS_QUERY;
  console.log(JSON.stringify(out));
});
`;

// A clean environment: no TPU/PJRT settings inherited from the developer's shell.
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('TPU_') && !(k in extra)) delete env[k];
  delete env.DFLASH_PJRT_PLUGIN;
  return env;
}

function load(plugin: string, env = cleanEnv()) {
  const r = spawnSync(process.execPath, ['-e', LOAD, DIST, plugin], { encoding: 'utf8', env, timeout: 90_000 });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  return { status: r.status, signal: r.signal, stderr: r.stderr, out: last.startsWith('{') ? JSON.parse(last) : undefined };
}

describe('accelerator plugins without the hardware', () => {
  it('./.venv-plugins holds both wheels (bash scripts/setup.sh installs them)', () => {
    expect(SITE, 'run `bash scripts/setup.sh`: it creates ./.venv-plugins').not.toBe('');
    expect(fs.existsSync(path.join(SITE, 'libtpu', 'libtpu.so'))).toBe(true);
    expect(fs.existsSync(path.join(SITE, 'jax_plugins', 'xla_cuda13', 'xla_cuda_plugin.so'))).toBe(true);
  });

  it('discovery finds them in the documented order: libtpu first, then the CUDA 13 plugin', () => {
    const report = describePlugins({ env: {}, python: false, sitePackages: [SITE] });
    const found = report.candidates.filter((c) => c.exists).map((c) => c.source);
    expect(found).toEqual(['libtpu Python package', 'jax-cuda13-pjrt']);
    expect(report.selected).toBe(path.join(SITE, 'libtpu', 'libtpu.so'));
  });

  it('libtpu: PJRT version and attributes; no TPU is a clear error within seconds; clean exit', () => {
    const r = load(path.join(SITE, 'libtpu', 'libtpu.so'));
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.out.probe).toMatchObject({ apiMajor: 0, addonApiMajor: 0 });
    expect(r.out.probe.apiMinor).toBeGreaterThanOrEqual(100);
    expect(r.out.probe.attributes.stablehlo_current_version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(r.out.error).toMatchObject({ isError: true, code: 'NOT_FOUND' });
    expect(r.out.error.message).toMatch(/TPU initialization failed/);
    // Without TPU_SKIP_MDS_QUERY=1 (set by dflash off GCE) this takes minutes of metadata retries.
    expect(r.out.seconds).toBeLessThan(30);
    expect(r.out.skipMds).toBe('1');
  });

  it("libtpu: the user's own TPU_SKIP_MDS_QUERY is left alone", () => {
    const r = load(path.join(SITE, 'libtpu', 'libtpu.so'), cleanEnv({ TPU_SKIP_MDS_QUERY: 'true' }));
    expect(r.status, r.stderr).toBe(0);
    expect(r.out.skipMds).toBe('true');
  });

  it('jax-cuda13-pjrt: PJRT version and attributes; no GPU is a clear error; clean exit', () => {
    const r = load(path.join(SITE, 'jax_plugins', 'xla_cuda13', 'xla_cuda_plugin.so'));
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.out.probe.apiMinor).toBeGreaterThanOrEqual(100);
    expect(r.out.probe.attributes.cuda_version).toMatch(/^13\d{3}$/);
    expect(r.out.error).toMatchObject({ isError: true, code: 'FAILED_PRECONDITION' });
    expect(r.out.error.message).toMatch(/No visible GPU devices/);
    expect(r.out.seconds).toBeLessThan(30);
  });

  it('dflash doctor on libtpu reports the failure and exits 0 (no signal at exit)', () => {
    const r = spawnSync(process.execPath, [path.join(DIST, 'cli.js'), 'doctor', '--plugin', path.join(SITE, 'libtpu', 'libtpu.so')],
      { encoding: 'utf8', env: cleanEnv(), timeout: 90_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/PJRT C API 0\.1\d\d/);
    expect(r.stdout).toMatch(/client: .*TPU initialization failed/);
  });

  it('a TPU held by another process: the error names that process and says what to do', async () => {
    // Another process takes libtpu's lock the way libtpu does (a POSIX write lock on the file).
    const holder = spawn(PYTHON, ['-c',
      "import fcntl,sys,time\nf=open('/tmp/libtpu_lockfile','a')\nfcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\nprint('locked', flush=True)\ntime.sleep(60)"],
    { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`lock holder exited ${code}`)));
        holder.once('error', reject);  // e.g. no ./.venv-plugins python: fail now, not at the test timeout
      });
      const r = load(path.join(SITE, 'libtpu', 'libtpu.so'));
      expect(r.status, r.stderr).toBe(0);
      const message = r.out.probeError as string;
      expect(message).toContain(`the TPU is in use by another process: pid ${holder.pid} (`);
      expect(message).toMatch(/python/);
      expect(message).toMatch(/stop that process \(do not delete the lockfile while it runs\)/);
      expect(r.out.error.message).toBe(message);  // Client.open says the same
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
