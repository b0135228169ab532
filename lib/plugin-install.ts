// `dflash install-plugin cpu | cuda | tpu`: puts a pinned PJRT plugin of a known-good PJRT C API
// version where discovery finds it, without Python. Each kind's wheels are unpacked into one
// directory laid out like site-packages (<plugins dir>/<kind>/, see pluginInstallDir()), so the
// CUDA plugin finds the nvidia.* libraries beside it exactly as in a pip environment. The new
// directory is assembled under a temporary name and renamed into place: an interrupted install
// never leaves a half-written plugin where discovery looks.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { pluginInstallDir } from './plugins';
import { chooseWheel, DEFAULT_INDEX_URL, downloadWheel, listWheels, unpackWheel, wheelArch } from './wheels';

export type InstallKind = 'cpu' | 'cuda' | 'tpu';

export interface WheelPin { name: string; version: string }

export interface PluginRecipe {
  /** The wheel holding the plugin, and the plugin's path inside it. */
  wheel: WheelPin;
  pluginFile: string;
  /** PJRT C API version of that build (checked when it is loaded after the install). */
  pjrtApi: string;
  /** Further wheels unpacked beside it (the CUDA libraries), skipped by `withLibraries: false`. */
  libraries?: WheelPin[];
  note: string;
}

// The pins. cpu: the plugin ./.venv uses (requirements.txt). tpu, cuda: requirements-plugins.txt
// (the test environment .venv-plugins) pins the same wheels; test/04 checks they agree.
export const RECIPES: Record<InstallKind, PluginRecipe> = {
  cpu: {
    wheel: { name: 'lammps-jax-pjrt-cpu', version: '0.11.2' },
    pluginFile: 'lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so',
    pjrtApi: '0.115',
    note: "XLA's CPU plugin from the XLA of jaxlib 0.11.2 (x86-64 Linux only)",
  },
  tpu: {
    wheel: { name: 'libtpu', version: '0.0.52' },
    pluginFile: 'libtpu/libtpu.so',
    pjrtApi: '0.117',
    note: 'Cloud TPU runtime; needs a TPU VM',
  },
  cuda: {
    wheel: { name: 'jax-cuda13-pjrt', version: '0.12.0.1' },
    pluginFile: 'jax_plugins/xla_cuda13/xla_cuda_plugin.so',
    pjrtApi: '0.116',
    // What `pip install jax-cuda13-plugin[with-cuda]` adds, at versions meeting its bounds
    // (about 2.3 GB). An NVIDIA driver for CUDA 13 must be installed on the host.
    libraries: [
      { name: 'nvidia-cuda-runtime', version: '13.5.37' },
      { name: 'nvidia-cublas', version: '13.8.2.12' },
      { name: 'nvidia-cudnn-cu13', version: '9.28.1.4' },
      { name: 'nvidia-cufft', version: '12.5.0.14' },
      { name: 'nvidia-cusolver', version: '12.4.1.2' },
      { name: 'nvidia-cusparse', version: '12.9.4.2' },
      { name: 'nvidia-nccl-cu13', version: '2.32.3' },
      { name: 'nvidia-nvjitlink', version: '13.5.37' },
      { name: 'nvidia-cuda-nvrtc', version: '13.5.37' },
      { name: 'nvidia-cuda-cupti', version: '13.5.25' },
      { name: 'nvidia-cuda-nvcc', version: '13.5.37' },
      { name: 'nvidia-nvshmem-cu13', version: '3.8.0' },
      { name: 'nvidia-nvvm', version: '13.5.37' },
    ],
    note: 'XLA GPU plugin for CUDA 13; needs an NVIDIA GPU and driver',
  },
};

export interface InstallOptions {
  /** Root of the installed plugins (default pluginInstallDir()). */
  dir?: string;
  /** PEP 691 simple index (default $DFLASH_INDEX_URL, else https://pypi.org/simple). */
  indexUrl?: string;
  /** Reinstall even when the same versions are in place. */
  force?: boolean;
  /** cuda: also fetch the nvidia.* libraries (default true). */
  withLibraries?: boolean;
  /** Progress and result lines (default: stderr). */
  log?: (line: string) => void;
}

export interface InstallResult {
  kind: InstallKind;
  /** The plugin file discovery will select. */
  plugin: string;
  /** The site-packages-like directory of this kind. */
  dir: string;
  /** false when the same pinned versions were already installed (nothing downloaded). */
  installed: boolean;
  packages: WheelPin[];
}

const MANIFEST = 'dflash-install.json';

interface Manifest { kind: InstallKind; pluginFile: string; packages: (WheelPin & { wheel: string; sha256: string })[]; pluginBytes: number }

function readManifest(dir: string): Manifest | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** Installs the pinned plugin of `kind`; idempotent (same versions in place: nothing fetched). */
export async function installPlugin(kind: InstallKind, opts: InstallOptions = {}): Promise<InstallResult> {
  const recipe = RECIPES[kind];
  if (!recipe) throw new Error(`unknown plugin kind ${JSON.stringify(kind)}: expected cpu, cuda or tpu`);
  if (process.platform !== 'linux') throw new Error(`install-plugin supports Linux only (this is ${process.platform})`);
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const root = opts.dir ?? pluginInstallDir();
  const dir = path.join(root, kind);
  const wanted = [recipe.wheel, ...(opts.withLibraries === false ? [] : recipe.libraries ?? [])];
  const plugin = path.join(dir, recipe.pluginFile);

  const have = readManifest(dir);
  const same = have && have.packages.length === wanted.length &&
    wanted.every((w, i) => have.packages[i].name === w.name && have.packages[i].version === w.version);
  if (same && !opts.force && fs.existsSync(plugin) && fs.statSync(plugin).size === have.pluginBytes) {
    log(`${recipe.wheel.name} ${recipe.wheel.version} is already installed in ${dir} (--force reinstalls)`);
    return { kind, plugin, dir, installed: false, packages: wanted };
  }

  const indexUrl = opts.indexUrl ?? process.env.DFLASH_INDEX_URL ?? DEFAULT_INDEX_URL;
  const arch = wheelArch();
  fs.mkdirSync(root, { recursive: true });
  const staging = fs.mkdtempSync(path.join(root, `.${kind}-`));
  const downloads = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-wheels-'));
  try {
    const manifest: Manifest = { kind, pluginFile: recipe.pluginFile, packages: [], pluginBytes: 0 };
    for (const pin of wanted) {
      const wheel = chooseWheel(await listWheels(pin.name, pin.version, indexUrl), arch);
      if (!wheel) throw new Error(`${pin.name} ${pin.version} has no wheel for Linux ${arch} on ${indexUrl}`);
      const file = path.join(downloads, wheel.filename);
      const t0 = Date.now();
      let shown = 0;
      await downloadWheel(wheel, file, (bytes, total) => {
        if (total && bytes - shown >= total / 4 && bytes < total) {
          shown = bytes;
          log(`  ${wheel.filename}: ${Math.round((100 * bytes) / total)}%`);
        }
      });
      const files = await unpackWheel(file, staging);
      fs.rmSync(file);
      log(`fetched ${wheel.filename} (${mb(wheel.size ?? 0)}, sha256 checked) in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${files} files`);
      manifest.packages.push({ ...pin, wheel: wheel.filename, sha256: wheel.sha256 });
    }
    const staged = path.join(staging, recipe.pluginFile);
    if (!fs.existsSync(staged)) throw new Error(`${recipe.wheel.name} ${recipe.wheel.version} does not contain ${recipe.pluginFile}`);
    manifest.pluginBytes = fs.statSync(staged).size;
    fs.writeFileSync(path.join(staging, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(staging, dir);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
    fs.rmSync(downloads, { recursive: true, force: true });
  }
  log(`installed ${recipe.wheel.name} ${recipe.wheel.version} (${recipe.note}) in ${dir}`);
  return { kind, plugin, dir, installed: true, packages: wanted };
}
