// PJRT plugin discovery. Candidates are tried in a fixed order and every step is recorded, so
// `dflash doctor` / describePlugins() can show exactly where dflash looked:
//   1. the explicit `plugin` option   2. $DFLASH_PJRT_PLUGIN
//   3. libtpu: $TPU_LIBRARY_PATH, then the `libtpu` Python package
//   4. the CUDA plugin of jax-cuda13-pjrt / jax-cuda12-pjrt
//   5. an XLA CPU plugin (the project's ./.venv first)
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface PluginCandidate {
  source: string;
  path: string;
  exists: boolean;
  selected?: boolean;
  probe?: Record<string, unknown>;
  probeError?: string;
}

const packageRoot = (): string => {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
};

// Python site-packages directories, without running Python: project-local venvs first.
export function sitePackagesDirs(): string[] {
  const roots = [packageRoot(), process.cwd()];
  const dirs: string[] = [];
  const add = (d: string) => {
    if (!dirs.includes(d) && fs.existsSync(d)) dirs.push(d);
  };
  const pyDirs = (lib: string, leaf: string) => {
    if (!fs.existsSync(lib)) return;
    for (const e of fs.readdirSync(lib).filter((n) => /^python3/.test(n)).sort().reverse()) add(path.join(lib, e, leaf));
  };
  for (const r of roots) pyDirs(path.join(r, '.venv', 'lib'), 'site-packages');
  if (process.env.VIRTUAL_ENV) pyDirs(path.join(process.env.VIRTUAL_ENV, 'lib'), 'site-packages');
  pyDirs(path.join(os.homedir(), '.local', 'lib'), 'site-packages');
  const pyenv = path.join(os.homedir(), '.pyenv', 'versions');
  if (fs.existsSync(pyenv)) for (const v of fs.readdirSync(pyenv)) pyDirs(path.join(pyenv, v, 'lib'), 'site-packages');
  pyDirs('/usr/local/lib', 'dist-packages');
  pyDirs('/usr/local/lib', 'site-packages');
  add('/usr/lib/python3/dist-packages');
  return dirs;
}

/** Every candidate location, in discovery order. */
export function pluginCandidates(opts: { plugin?: string } = {}): PluginCandidate[] {
  const out: PluginCandidate[] = [];
  const push = (source: string, p: string) => out.push({ source, path: p, exists: fs.existsSync(p) });
  if (opts.plugin) push('option `plugin`', opts.plugin);
  if (process.env.DFLASH_PJRT_PLUGIN) push('$DFLASH_PJRT_PLUGIN', process.env.DFLASH_PJRT_PLUGIN);
  if (process.env.TPU_LIBRARY_PATH) push('$TPU_LIBRARY_PATH', process.env.TPU_LIBRARY_PATH);
  const sites = sitePackagesDirs();
  for (const s of sites) push('libtpu Python package', path.join(s, 'libtpu', 'libtpu.so'));
  push('system libtpu', '/lib/libtpu.so');
  for (const cuda of ['xla_cuda13', 'xla_cuda12'])
    for (const s of sites) push(`jax-${cuda.replace('xla_', '')}-pjrt`, path.join(s, 'jax_plugins', cuda, 'xla_cuda_plugin.so'));
  for (const s of sites) {
    push('XLA CPU plugin (lammps-jax-pjrt-cpu)', path.join(s, 'lammps_jax_pjrt_cpu', 'pjrt_c_api_cpu_plugin.so'));
    push('XLA CPU plugin (xla-cpu-pjrt)', path.join(s, 'xla_plugins', 'xla_cpu_pjrt', 'xla_cpu_pjrt.so'));
  }
  return out;
}

/** The first existing candidate; throws an Error listing every place looked at. */
export function findPlugin(opts: { plugin?: string } = {}): PluginCandidate {
  const cands = pluginCandidates(opts);
  // An explicit choice is never silently replaced by another plugin.
  const explicit = cands.find((c) => c.source === 'option `plugin`' || c.source === '$DFLASH_PJRT_PLUGIN');
  if (explicit) {
    if (!explicit.exists) throw new Error(`PJRT plugin not found: ${explicit.path} (from ${explicit.source})`);
    return { ...explicit, selected: true };
  }
  const hit = cands.find((c) => c.exists);
  if (!hit) {
    const looked = cands.map((c) => `  ${c.source}: ${c.path}`).join('\n');
    throw new Error(`no PJRT plugin found. Install one (e.g. \`bash scripts/setup.sh\` for the CPU plugin) or pass { plugin } / set DFLASH_PJRT_PLUGIN. Looked at:\n${looked}`);
  }
  return { ...hit, selected: true };
}

/** The discovery report: every candidate, which one is selected, and (with `probe`) what the
 *  addon learns by loading each existing one (PJRT API version, attributes) or its error. */
export function describePlugins(opts: { plugin?: string; probe?: (p: string) => unknown } = {}): { candidates: PluginCandidate[] } {
  const cands = pluginCandidates(opts);
  let selected: string | undefined;
  try {
    selected = findPlugin(opts).path;
  } catch {
    selected = undefined;
  }
  for (const c of cands) {
    c.selected = c.path === selected && c.exists;
    if (c.exists && opts.probe) {
      try {
        c.probe = opts.probe(c.path) as Record<string, unknown>;
      } catch (e) {
        c.probeError = (e as Error).message;
      }
    }
  }
  return { candidates: cands };
}
