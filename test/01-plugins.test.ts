// Plugin discovery (lib/plugins.ts): the documented order over a fake file tree (TPU before CUDA
// 13 before CUDA 12 before CPU, whatever directory they sit in), explicit choices winning and never
// silently replaced, site-packages search without Python and the Python fallback, the report with
// every step, and the real thing: the project's CPU plugin probed by the addon.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterEach, describe, expect, it } from 'vitest';

import { describePluginsWithProbe } from '../lib/index';
import { native } from '../lib/native';
import { describePlugins, findPlugin, pluginCandidates, pluginInstallDir, pythonSitePackages, sitePackagesDirs } from '../lib/plugins';

const saved = process.env.DFLASH_PJRT_PLUGIN;
afterEach(() => {
  if (saved === undefined) delete process.env.DFLASH_PJRT_PLUGIN;
  else process.env.DFLASH_PJRT_PLUGIN = saved;
});

const REL = {
  tpu: 'libtpu/libtpu.so',
  cuda13: 'jax_plugins/xla_cuda13/xla_cuda_plugin.so',
  cuda12: 'jax_plugins/xla_cuda12/xla_cuda_plugin.so',
  lammps: 'lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so',
  xlacpu: 'xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so',
};

/** A temp tree; `files` are created empty (a trailing / makes a directory). */
function tree(files: string[]): string {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-plug-')));
  for (const f of files) {
    if (f.endsWith('/')) {
      fs.mkdirSync(path.join(root, f), { recursive: true });
      continue;
    }
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), '');
  }
  return root;
}
// Hermetic: no process env, no Python, only the given site-packages.
const only = (root: string, sites: string[], extra: Record<string, unknown> = {}) =>
  ({ env: {}, python: false as const, sitePackages: sites.map((s) => path.join(root, s)), ...extra });

describe('discovery order over a fake tree', () => {
  it('prefers TPU, then CUDA 13, then CUDA 12, then CPU, regardless of which directory holds them', () => {
    const root = tree([`a/${REL.lammps}`, `b/${REL.cuda12}`, `c/${REL.cuda13}`, `d/${REL.tpu}`]);
    const sites = ['a', 'b', 'c', 'd'];
    expect(findPlugin(only(root, sites)).path).toBe(path.join(root, 'd', REL.tpu));
    fs.rmSync(path.join(root, 'd', REL.tpu));
    expect(findPlugin(only(root, sites))).toMatchObject({ kind: 'cuda', source: 'jax-cuda13-pjrt', path: path.join(root, 'c', REL.cuda13) });
    fs.rmSync(path.join(root, 'c', REL.cuda13));
    expect(findPlugin(only(root, sites)).source).toBe('jax-cuda12-pjrt');
    fs.rmSync(path.join(root, 'b', REL.cuda12));
    expect(findPlugin(only(root, sites))).toMatchObject({ kind: 'cpu', source: 'XLA CPU plugin (lammps-jax-pjrt-cpu)' });
  });

  it('within a kind, the earlier site-packages directory wins; xla-cpu-pjrt is found too', () => {
    const root = tree([`a/${REL.xlacpu}`, `b/${REL.lammps}`]);
    expect(findPlugin(only(root, ['b', 'a'])).path).toBe(path.join(root, 'b', REL.lammps));
    expect(findPlugin(only(root, ['a', 'b'])).path).toBe(path.join(root, 'a', REL.xlacpu));
  });

  it('lists every candidate in the documented order', () => {
    const root = tree(['s/']);
    const all = pluginCandidates(only(root, ['s', 'missing'], { plugin: '/x/option.so', env: { DFLASH_PJRT_PLUGIN: '/x/env.so', TPU_LIBRARY_PATH: '/x/tpu.so' } })).map((c) => c.source);
    expect(all).toEqual([
      'option `plugin`', '$DFLASH_PJRT_PLUGIN', '$TPU_LIBRARY_PATH', 'libtpu Python package', 'system libtpu',
      'jax-cuda13-pjrt', 'jax-cuda12-pjrt', 'XLA CPU plugin (lammps-jax-pjrt-cpu)', 'XLA CPU plugin (xla-cpu-pjrt)',
    ]);
  });
});

describe('explicit choices', () => {
  it('the option wins over the environment, which wins over everything found', () => {
    const root = tree([`s/${REL.tpu}`, 'opt.so', 'env.so', 'tpu.so']);
    const env = { DFLASH_PJRT_PLUGIN: path.join(root, 'env.so'), TPU_LIBRARY_PATH: path.join(root, 'tpu.so') };
    expect(findPlugin(only(root, ['s'], { env, plugin: path.join(root, 'opt.so') }))).toMatchObject({ kind: 'option', path: path.join(root, 'opt.so'), selected: true });
    expect(findPlugin(only(root, ['s'], { env }))).toMatchObject({ kind: 'env', path: path.join(root, 'env.so') });
    expect(findPlugin(only(root, ['s'], { env: { TPU_LIBRARY_PATH: env.TPU_LIBRARY_PATH } }))).toMatchObject({ source: '$TPU_LIBRARY_PATH' });
    expect(findPlugin(only(root, ['s'], { plugin: 'opt.so', cwd: root })).path).toBe(path.join(root, 'opt.so'));  // relative to cwd
  });

  it('an explicit path that does not exist (or is a directory) is an error, not a fallback', () => {
    const root = tree([`s/${REL.lammps}`]);
    expect(() => findPlugin(only(root, ['s'], { plugin: '/no/such/plugin.so' }))).toThrow(/PJRT plugin not found: \/no\/such\/plugin\.so \(from option `plugin`\)/);
    expect(() => findPlugin(only(root, ['s'], { env: { DFLASH_PJRT_PLUGIN: '/no/env.so' } }))).toThrow(/\/no\/env\.so \(from \$DFLASH_PJRT_PLUGIN\)/);
    expect(() => findPlugin(only(root, ['s'], { plugin: root }))).toThrow(/is not a file/);
    const report = describePlugins(only(root, ['s'], { plugin: '/no/such/plugin.so' }));
    expect(report.selected).toBeUndefined();
    expect(report.error).toMatch(/not found/);
    expect(report.candidates.every((c) => !c.selected)).toBe(true);
    expect(report.candidates.find((c) => c.kind === 'cpu' && c.exists)).toBeDefined();  // still listed
  });

  it('nothing found: the error names install-plugin and gives one line per discovery source', () => {
    const root = tree(['s/', 't/']);
    let msg = '';
    try {
      findPlugin(only(root, ['s', 't']));
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/^no PJRT plugin found\. Install one with `npx dflash install-plugin cpu`/);
    expect(msg).toContain('`npx dflash doctor --verbose`');
    const lines = msg.split('\n').slice(1);
    expect(lines).toEqual([
      '  option `plugin`: not given',
      '  $DFLASH_PJRT_PLUGIN: not set',
      '  $TPU_LIBRARY_PATH: not set',
      `  libtpu Python package: not in 2 site-packages directories (first: ${path.join(root, 's', REL.tpu)})`,
      '  system libtpu: not at /lib/libtpu.so',
      `  jax-cuda13-pjrt: not in 2 site-packages directories (first: ${path.join(root, 's', REL.cuda13)})`,
      `  jax-cuda12-pjrt: not in 2 site-packages directories (first: ${path.join(root, 's', REL.cuda12)})`,
      `  XLA CPU plugin (lammps-jax-pjrt-cpu): not in 2 site-packages directories (first: ${path.join(root, 's', REL.lammps)})`,
      `  XLA CPU plugin (xla-cpu-pjrt): not in 2 site-packages directories (first: ${path.join(root, 's', REL.xlacpu)})`,
    ]);
    // Every path is still in the report.
    const report = describePlugins(only(root, ['s', 't']));
    for (const rel of Object.values(REL)) expect(report.candidates.map((c) => c.path)).toContain(path.join(root, 't', rel));
  });
});

describe('plugins installed by `dflash install-plugin`', () => {
  it('lives under $DFLASH_CACHE_DIR/plugins, else $XDG_CACHE_HOME/dflash/plugins, else ~/.cache/dflash/plugins', () => {
    expect(pluginInstallDir({ DFLASH_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' }, '/h')).toBe('/c/plugins');
    expect(pluginInstallDir({ XDG_CACHE_HOME: '/x' }, '/h')).toBe('/x/dflash/plugins');
    expect(pluginInstallDir({}, '/h')).toBe('/h/.cache/dflash/plugins');
  });

  it('an installed plugin comes first within its kind, and kinds keep their order', () => {
    const root = tree([`site/${REL.lammps}`, `site/${REL.cuda12}`, 'inst/cpu/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so']);
    const opts = only(root, ['site'], { installDir: path.join(root, 'inst') });
    expect(findPlugin(opts).source).toBe('jax-cuda12-pjrt');  // a CUDA plugin still beats any CPU one
    fs.rmSync(path.join(root, 'site', REL.cuda12));
    expect(findPlugin(opts)).toMatchObject({ source: 'dflash install-plugin cpu', path: path.join(root, 'inst/cpu/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so') });
    const sources = pluginCandidates(opts).map((c) => c.source);
    expect(sources.indexOf('dflash install-plugin tpu')).toBeLessThan(sources.indexOf('libtpu Python package'));
    expect(sources.indexOf('dflash install-plugin cuda')).toBeLessThan(sources.indexOf('jax-cuda13-pjrt'));
    expect(sources.indexOf('dflash install-plugin cpu')).toBeLessThan(sources.indexOf('XLA CPU plugin (lammps-jax-pjrt-cpu)'));
    // The directory comes from the environment by default...
    const env = { DFLASH_CACHE_DIR: root };
    fs.mkdirSync(path.join(root, 'plugins'));
    fs.renameSync(path.join(root, 'inst', 'cpu'), path.join(root, 'plugins', 'cpu'));
    // ...and wins over the CPU plugin of the project's own ./.venv.
    expect(findPlugin({ env, python: false, home: root, cwd: root })).toMatchObject({
      source: 'dflash install-plugin cpu', path: path.join(root, 'plugins/cpu/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so'),
    });
  });
});

describe('site-packages without running Python', () => {
  it('finds venvs in cwd, $VIRTUAL_ENV, $CONDA_PREFIX, ~/.local and pyenv, in that order, newest Python first', () => {
    const root = tree([
      'cwd/.venv/lib/python3.9/site-packages/x', 'cwd/.venv/lib/python3.12/site-packages/x',
      'venv/lib/python3.11/site-packages/x', 'conda/lib/python3.10/site-packages/x',
      'home/.local/lib/python3.11/site-packages/x', 'home/.pyenv/versions/3.12.1/lib/python3.12/site-packages/x',
    ]);
    const dirs = sitePackagesDirs({ cwd: path.join(root, 'cwd'), home: path.join(root, 'home'), env: { VIRTUAL_ENV: path.join(root, 'venv'), CONDA_PREFIX: path.join(root, 'conda') } });
    expect(dirs.filter((d) => d.startsWith(root)).map((d) => path.relative(root, d))).toEqual([
      'cwd/.venv/lib/python3.12/site-packages', 'cwd/.venv/lib/python3.9/site-packages',
      'venv/lib/python3.11/site-packages', 'conda/lib/python3.10/site-packages',
      'home/.local/lib/python3.11/site-packages', 'home/.pyenv/versions/3.12.1/lib/python3.12/site-packages',
    ]);
    // The package's own ./.venv comes first of all.
    expect(dirs[0]).toBe(path.join(__dirname, '..', '.venv', 'lib', fs.readdirSync(path.join(__dirname, '..', '.venv', 'lib')).find((n) => n.startsWith('python3'))!, 'site-packages'));
  });

  it("asks Python only when nothing was found, and uses the directories it reports", () => {
    const root = tree([`py-site/${REL.cuda13}`, 'empty/']);
    const fake = path.join(root, 'fake-python');
    fs.writeFileSync(fake, `#!/bin/sh\necho '["${path.join(root, 'py-site')}", "/does/not/exist"]'\n`, { mode: 0o755 });
    const r = describePlugins({ env: {}, python: fake, sitePackages: [path.join(root, 'empty')] });
    expect(r.selected).toBe(path.join(root, 'py-site', REL.cuda13));
    expect(r.sitePackages).toEqual([path.join(root, 'empty'), path.join(root, 'py-site')]);
    expect(r.notes.find((n) => n.startsWith(fake))).toContain(path.join(root, 'py-site'));
    const found = tree([`s/${REL.lammps}`]);
    expect(describePlugins({ env: {}, python: fake, sitePackages: [path.join(found, 's')] }).notes.some((n) => n.startsWith(fake))).toBe(false);
  });

  it('a Python that fails is a note, not an error', () => {
    expect(pythonSitePackages('/no/such/python').note).toMatch(/\/no\/such\/python site\.getsitepackages\(\): failed/);
    expect(pythonSitePackages('/bin/false')).toMatchObject({ dirs: [] });
  });
});

describe('report', () => {
  it('probes each existing candidate once, and records probe errors', () => {
    const root = tree([`a/${REL.cuda12}`, `a/${REL.lammps}`]);
    const probed: string[] = [];
    const r = describePlugins({
      ...only(root, ['a']),
      probe: (p) => {
        probed.push(p);
        if (p.includes('cuda')) throw new Error('libcudart.so.12: cannot open shared object file');
        return { platform: 'cpu', apiMinor: 115 };
      },
    });
    expect(probed.sort()).toEqual([path.join(root, 'a', REL.cuda12), path.join(root, 'a', REL.lammps)].sort());
    const cuda = r.candidates.find((c) => c.kind === 'cuda' && c.exists)!;
    expect(cuda).toMatchObject({ selected: true, probeError: 'libcudart.so.12: cannot open shared object file' });
    expect(r.candidates.find((c) => c.kind === 'cpu' && c.exists)).toMatchObject({ selected: false, probe: { platform: 'cpu', apiMinor: 115 } });
    expect(r.candidates.filter((c) => !c.exists).every((c) => c.probe === undefined && c.probeError === undefined)).toBe(true);
    expect(r.notes).toContain('$DFLASH_PJRT_PLUGIN: not set');
  });
});

describe('on this machine (the project CPU plugin and the addon)', () => {
  it('finds the CPU plugin of the project venv when nothing is configured', () => {
    delete process.env.DFLASH_PJRT_PLUGIN;
    const p = findPlugin();
    expect(fs.existsSync(p.path)).toBe(true);
    expect(p.selected).toBe(true);
  });

  it('the environment variable is read from process.env by default', () => {
    process.env.DFLASH_PJRT_PLUGIN = '/no/such/env-plugin.so';
    expect(() => findPlugin()).toThrow(/env-plugin\.so.*DFLASH_PJRT_PLUGIN/);
  });

  it('probes every found plugin: PJRT API versions and StableHLO version', async () => {
    delete process.env.DFLASH_PJRT_PLUGIN;
    const report = await describePluginsWithProbe();
    const sel = report.candidates.find((c) => c.selected)!;
    expect(sel).toBeDefined();
    const probe = sel.probe as { apiMajor: number; apiMinor: number; addonApiMinor: number; attributes: Record<string, string> };
    expect(probe.apiMajor).toBe(0);
    expect(probe.apiMinor).toBeGreaterThanOrEqual(100);
    expect(probe.addonApiMinor).toBe(114);
    expect(probe.attributes.stablehlo_current_version).toMatch(/^\d+\.\d+\.\d+$/);
    expect((report.client as { platformName: string }).platformName).toBe('cpu');
  });

  it('records a load error for a candidate that is not a plugin', () => {
    const bogus = path.join(__dirname, 'fixtures', 'models', 'qwen3-f32', 'config.json');
    const report = describePlugins({ plugin: bogus, probe: (p) => native().probePlugin(p) });
    const c = report.candidates[0];
    expect(c.exists).toBe(true);
    expect(c.probeError).toMatch(/config\.json/);
  });
});
