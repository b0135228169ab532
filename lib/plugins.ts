// PJRT plugin discovery. Candidates are listed in a fixed order and every step is recorded, so
// `dflash doctor` / describePlugins() can show exactly where dflash looked and why it chose:
//   1. the explicit `plugin` option          2. $DFLASH_PJRT_PLUGIN
//   3. libtpu: $TPU_LIBRARY_PATH, `dflash install-plugin tpu`, the `libtpu` Python package
//      (libtpu/libtpu.so), /lib/libtpu.so
//   4. the CUDA plugin: `dflash install-plugin cuda`, jax-cuda13-pjrt, then jax-cuda12-pjrt
//   5. an XLA CPU plugin: `dflash install-plugin cpu`, lammps-jax-pjrt-cpu, xla-cpu-pjrt
// `dflash install-plugin` unpacks wheels under pluginInstallDir()/<kind>. Python site-packages directories are found without running Python (project ./.venv first, then
// $VIRTUAL_ENV, $CONDA_PREFIX, ~/.local, pyenv, system dirs). Only when none of those holds a
// plugin is `python3 -c 'import site; ...'` asked (2 s timeout) for more directories.
// An explicit choice (1 or 2) is never silently replaced: if it does not exist, findPlugin throws.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export type PluginKind = 'option' | 'env' | 'tpu' | 'cuda' | 'cpu';

export interface PluginCandidate {
  /** Human-readable origin, e.g. "$DFLASH_PJRT_PLUGIN" or "jax-cuda13-pjrt". */
  source: string;
  kind: PluginKind;
  path: string;
  /** The path is an existing regular file (a symlink to one counts). */
  exists: boolean;
  selected?: boolean;
  /** What `probe` returned for this path (only for existing candidates). */
  probe?: Record<string, unknown>;
  /** The message of the error `probe` threw. */
  probeError?: string;
}

export interface DiscoveryOptions {
  /** Path of a PJRT plugin (.so); wins over everything and must exist. */
  plugin?: string;
  /** Environment to read (default process.env). */
  env?: Record<string, string | undefined>;
  /** Use exactly these site-packages directories instead of searching (tests, odd layouts). */
  sitePackages?: string[];
  /** Ask this Python for its site-packages when the searched ones hold no plugin; false: never
   *  (default 'python3', or $DFLASH_PYTHON). */
  python?: string | false;
  /** Home directory (default os.homedir()) and working directory (default process.cwd()). */
  home?: string;
  cwd?: string;
  /** Where `dflash install-plugin` puts plugins (default pluginInstallDir(); with `sitePackages`
   *  given, none unless set here). */
  installDir?: string;
}

export interface PluginReport {
  candidates: PluginCandidate[];
  /** Site-packages directories searched, in order. */
  sitePackages: string[];
  /** One line per step that produced no candidate (unset variables, the Python query). */
  notes: string[];
  /** Path of the chosen plugin, if any. */
  selected?: string;
  /** Why nothing was chosen (findPlugin's error message). */
  error?: string;
}

const OPTION_SOURCE = 'option `plugin`';
const ENV_SOURCE = '$DFLASH_PJRT_PLUGIN';

/** The package root (lib/ under ts-node/vitest, dist/lib/ once compiled). */
function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

/** Where `dflash install-plugin` puts plugins: $DFLASH_CACHE_DIR/plugins, else
 *  $XDG_CACHE_HOME/dflash/plugins, else ~/.cache/dflash/plugins. */
export function pluginInstallDir(env: Record<string, string | undefined> = process.env, home = os.homedir()): string {
  if (env.DFLASH_CACHE_DIR) return path.join(env.DFLASH_CACHE_DIR, 'plugins');
  return path.join(env.XDG_CACHE_HOME || path.join(home, '.cache'), 'dflash', 'plugins');
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Python site-packages directories, without running Python: project-local venvs first. */
export function sitePackagesDirs(opts: Pick<DiscoveryOptions, 'env' | 'home' | 'cwd'> = {}): string[] {
  const env = opts.env ?? process.env;
  const home = opts.home ?? os.homedir();
  const dirs: string[] = [];
  const seen = new Set<string>();
  const add = (d: string) => {
    if (!isDir(d)) return;
    let real = d;
    try {
      real = fs.realpathSync(d);
    } catch { /* keep d */ }
    if (seen.has(real)) return;
    seen.add(real);
    dirs.push(d);
  };
  // <prefix>/lib/python3.*/<leaf>, newest Python first.
  const pyDirs = (lib: string, leaf: string) => {
    if (!isDir(lib)) return;
    const vers = fs.readdirSync(lib).filter((n) => /^python3(\.\d+)?t?$/.test(n));
    const minor = (n: string) => parseInt(n.split('.')[1] ?? '0', 10) || 0;
    vers.sort((a, b) => minor(b) - minor(a) || a.localeCompare(b));
    for (const v of vers) add(path.join(lib, v, leaf));
  };
  const venv = (prefix: string) => {
    pyDirs(path.join(prefix, 'lib'), 'site-packages');
    pyDirs(path.join(prefix, 'lib64'), 'site-packages');
  };
  for (const root of [packageRoot(), opts.cwd ?? process.cwd()]) venv(path.join(root, '.venv'));
  if (env.VIRTUAL_ENV) venv(env.VIRTUAL_ENV);
  if (env.CONDA_PREFIX) venv(env.CONDA_PREFIX);
  for (const p of (env.PYTHONPATH ?? '').split(path.delimiter)) if (p) add(p);
  pyDirs(path.join(home, '.local', 'lib'), 'site-packages');
  const pyenv = path.join(env.PYENV_ROOT ?? path.join(home, '.pyenv'), 'versions');
  if (isDir(pyenv)) for (const v of fs.readdirSync(pyenv).sort().reverse()) venv(path.join(pyenv, v));
  pyDirs('/usr/local/lib', 'dist-packages');
  pyDirs('/usr/local/lib', 'site-packages');
  add('/usr/lib/python3/dist-packages');
  pyDirs('/usr/lib', 'site-packages');
  pyDirs('/usr/lib64', 'site-packages');
  return dirs;
}

/** Asks a Python interpreter for its site-packages directories (2 s timeout); [] on any failure. */
export function pythonSitePackages(python = 'python3'): { dirs: string[]; note: string } {
  const code = 'import json, site; print(json.dumps(site.getsitepackages() + [site.getusersitepackages()]))';
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status}: ${(r.stderr ?? '').trim().split('\n').pop()}`;
    return { dirs: [], note: `${python} site.getsitepackages(): failed (${why})` };
  }
  try {
    const dirs = (JSON.parse(r.stdout) as unknown[]).filter((d): d is string => typeof d === 'string' && isDir(d));
    return { dirs, note: `${python} site.getsitepackages(): ${dirs.length ? dirs.join(', ') : 'no existing directories'}` };
  } catch {
    return { dirs: [], note: `${python} site.getsitepackages(): unreadable output` };
  }
}

// Candidates found inside site-packages directories (and the install-plugin directories), grouped
// by kind in discovery order.
function siteCandidates(sites: string[], installDir: string | undefined, systemLibtpu: boolean): PluginCandidate[] {
  const out: PluginCandidate[] = [];
  const push = (source: string, kind: PluginKind, p: string) => out.push({ source, kind, path: p, exists: isFile(p) });
  const installed = (kind: 'tpu' | 'cuda' | 'cpu', rel: string) => {
    if (installDir) push(`dflash install-plugin ${kind}`, kind, path.join(installDir, kind, rel));
  };
  installed('tpu', 'libtpu/libtpu.so');
  for (const s of sites) push('libtpu Python package', 'tpu', path.join(s, 'libtpu', 'libtpu.so'));
  if (systemLibtpu) push('system libtpu', 'tpu', '/lib/libtpu.so');
  installed('cuda', 'jax_plugins/xla_cuda13/xla_cuda_plugin.so');
  for (const v of ['13', '12'])
    for (const s of sites) push(`jax-cuda${v}-pjrt`, 'cuda', path.join(s, 'jax_plugins', `xla_cuda${v}`, 'xla_cuda_plugin.so'));
  installed('cpu', 'lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so');
  for (const s of sites) {
    push('XLA CPU plugin (lammps-jax-pjrt-cpu)', 'cpu', path.join(s, 'lammps_jax_pjrt_cpu', 'pjrt_c_api_cpu_plugin.so'));
    push('XLA CPU plugin (xla-cpu-pjrt)', 'cpu', path.join(s, 'xla_plugins', 'xla_cpu_pjrt', 'xla_cpu_pjrt.so'));
  }
  return out;
}

/** One line per discovery source: what it is, and where it pointed or how many places it
 *  covered (every path: describePlugins() / `dflash doctor --verbose`). */
export function summarizeSources(report: Pick<PluginReport, 'candidates' | 'notes'>): string[] {
  const lines = report.notes.filter((n) => !n.includes('site.getsitepackages')).map((n) => `  ${n}`);
  const groups = new Map<string, PluginCandidate[]>();
  for (const c of report.candidates) groups.set(c.source, [...(groups.get(c.source) ?? []), c]);
  for (const [source, cs] of groups) {
    const hit = cs.find((c) => c.selected) ?? cs.find((c) => c.exists);
    if (hit) lines.push(`${hit.selected ? '* ' : '  '}${source}: ${hit.path}${hit.selected ? ' (selected)' : ' (found)'}`);
    else if (cs.length === 1) lines.push(`  ${source}: not at ${cs[0].path}`);
    else lines.push(`  ${source}: not in ${cs.length} site-packages directories (first: ${cs[0].path})`);
  }
  lines.push(...report.notes.filter((n) => n.includes('site.getsitepackages')).map((n) => `  ${n}`));
  return lines;
}

function discover(opts: DiscoveryOptions): PluginReport {
  const env = opts.env ?? process.env;
  const notes: string[] = [];
  const head: PluginCandidate[] = [];
  const push = (source: string, kind: PluginKind, p: string) => head.push({ source, kind, path: p, exists: isFile(p) });
  if (opts.plugin) push(OPTION_SOURCE, 'option', path.resolve(opts.cwd ?? process.cwd(), opts.plugin));
  else notes.push(`${OPTION_SOURCE}: not given`);
  if (env.DFLASH_PJRT_PLUGIN) push(ENV_SOURCE, 'env', path.resolve(opts.cwd ?? process.cwd(), env.DFLASH_PJRT_PLUGIN));
  else notes.push(`${ENV_SOURCE}: not set`);
  if (env.TPU_LIBRARY_PATH) push('$TPU_LIBRARY_PATH', 'tpu', env.TPU_LIBRARY_PATH);
  else notes.push('$TPU_LIBRARY_PATH: not set');

  const sites = opts.sitePackages ? opts.sitePackages.filter(isDir) : sitePackagesDirs(opts);
  const installDir = opts.installDir ?? (opts.sitePackages ? undefined : pluginInstallDir(env, opts.home));
  const fromSites = siteCandidates(sites, installDir, true);
  const candidates = [...head, ...fromSites];
  const sitePackages = [...sites];

  const python = opts.python ?? env.DFLASH_PYTHON ?? 'python3';
  if (!candidates.some((c) => c.exists) && python !== false) {
    const q = pythonSitePackages(python);
    notes.push(q.note);
    const known = new Set(sites.map((s) => { try { return fs.realpathSync(s); } catch { return s; } }));
    const extra = q.dirs.filter((d) => !known.has(fs.realpathSync(d)));
    candidates.push(...siteCandidates(extra, undefined, false));
    sitePackages.push(...extra);
  }

  const report: PluginReport = { candidates, sitePackages, notes };
  const explicit = candidates.find((c) => c.kind === 'option' || c.kind === 'env');
  let chosen: PluginCandidate | undefined;
  if (explicit) {
    if (explicit.exists) chosen = explicit;
    else report.error = `PJRT plugin not found: ${explicit.path} (from ${explicit.source}) is not a file`;
  } else {
    chosen = candidates.find((c) => c.exists);
    if (!chosen) {
      report.error =
        'no PJRT plugin found. Install one with `npx dflash install-plugin cpu` (or `cuda` on NVIDIA GPUs, ' +
        '`tpu` on Cloud TPU VMs), or pass { plugin } / set DFLASH_PJRT_PLUGIN. Looked at (every path: ' +
        `\`npx dflash doctor --verbose\`):\n${summarizeSources({ candidates, notes }).join('\n')}`;
    }
  }
  if (chosen) {
    chosen.selected = true;
    report.selected = chosen.path;
  }
  for (const c of candidates) c.selected = c === chosen;
  return report;
}

/** Every candidate location, in discovery order (nothing probed, nothing thrown). */
export function pluginCandidates(opts: DiscoveryOptions = {}): PluginCandidate[] {
  return discover(opts).candidates;
}

/** The plugin to load: the explicit one (option, then $DFLASH_PJRT_PLUGIN), which must exist, or
 *  else the first existing candidate. Throws an Error listing every place looked at. */
export function findPlugin(opts: DiscoveryOptions = {}): PluginCandidate {
  const r = discover(opts);
  const hit = r.candidates.find((c) => c.selected);
  if (!hit) throw new Error(r.error);
  return { ...hit };
}

/** The discovery report: every candidate, which one is selected, and (with `probe`) what the
 *  addon learns by loading each existing candidate (PJRT API version, platform, StableHLO
 *  version), or the error it threw. */
export function describePlugins(opts: DiscoveryOptions & { probe?: (pluginPath: string) => object } = {}): PluginReport {
  const report = discover(opts);
  if (opts.probe) {
    for (const c of report.candidates) {
      if (!c.exists) continue;
      try {
        c.probe = opts.probe(c.path) as Record<string, unknown>;
      } catch (e) {
        c.probeError = e instanceof Error ? e.message : String(e);
      }
    }
  }
  return report;
}
