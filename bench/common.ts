// Shared plumbing of the benchmark scripts: command-line options, the models a bench runs on
// (a checkpoint pair, or with --random a random-weight pair of a preset shape made on the spot),
// the machine line every table starts with, printing a result table and saving the same table
// under bench/results/, and the top-level error handling.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import type { NativeClient } from '../lib/native';
import { makeDrafter, makeTarget, tmpDir, TinyDrafter, TinyTarget } from '../test/helpers/tiny-model';

/** `--name value` from the command line, else `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

/** True when `--name` is on the command line. */
export function flag(name: string): boolean {
  return process.argv.includes(`--${name}`);
}

/** Random-weight pair shapes for `--random --preset NAME` (f32, Qwen3 layout, byte tokenizer). */
export const PRESETS: Record<string, { target: TinyTarget; drafter: TinyDrafter }> = {
  // The test suite's default target shape (0.06M parameters), a 1-layer drafter, block 16.
  tiny: {
    target: { vocab: 320, hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, headDim: 16 },
    drafter: { layers: 1, heads: 4, kvHeads: 2, headDim: 16, intermediate: 128, blockSize: 16 },
  },
  // 33.6M-parameter target (134 MB f32): hidden 512, 8 layers, vocab 8192; 2-layer drafter.
  small: {
    target: { vocab: 8192, hidden: 512, intermediate: 1536, layers: 8, heads: 8, kvHeads: 4, headDim: 64, std: 0.05 },
    drafter: { layers: 2, heads: 8, kvHeads: 4, headDim: 64, intermediate: 1536, blockSize: 16, std: 0.05 },
  },
};

export interface Models {
  target: string;
  drafter: string;
  /** The preset name (+ "-all-accepted") when the pair is random (made by this run), else undefined. */
  random?: string;
  /** One line describing where the models came from, for the table header. */
  describe: string;
}

/** --target / --drafter, or with --random a fresh random pair of --preset (default tiny) in a
 *  temporary directory that is removed when the process exits. --all-accepted (with --random)
 *  zeroes both final norms, so target and drafter always pick token 0: every draft is accepted
 *  and τ = block, the ceiling a perfect drafter reaches on this device. */
export function models(withDrafter = true): Models {
  if (!flag('random')) {
    const target = arg('target', 'models/code-pair/target');
    const drafter = arg('drafter', 'models/code-pair/drafter');
    return { target, drafter, describe: `target ${target}` + (withDrafter ? `; drafter ${drafter}` : '') };
  }
  const preset = arg('preset', 'tiny');
  const p = PRESETS[preset];
  if (!p) throw new Error(`unknown --preset ${preset} (${Object.keys(PRESETS).join(', ')})`);
  const dir = tmpDir('dflash-bench-');
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const target = path.join(dir, 'target'), drafter = path.join(dir, 'drafter');
  // No EOS id, so every generation runs to its token budget (random weights would stop anywhere).
  const all = flag('all-accepted');
  const cfg = makeTarget(target, { ...p.target, eos: null, constant: all });
  const tc = path.join(target, 'tokenizer_config.json');
  fs.writeFileSync(tc, JSON.stringify({ ...JSON.parse(fs.readFileSync(tc, 'utf8')), eos_token: null }));
  const layers = p.target.layers ?? 2;
  if (withDrafter) makeDrafter(drafter, cfg, { targetLayerIds: [0, layers - 1], ...p.drafter, constant: all });
  const t = p.target, d = p.drafter;
  const describe = `RANDOM weights (--random --preset ${preset}, test/helpers/tiny-model.ts): target hidden ${t.hidden}, ` +
    `${t.layers} layers, vocab ${t.vocab}, intermediate ${t.intermediate}` +
    (withDrafter ? `; drafter ${d.layers} layer(s), block ${d.blockSize}` : '') +
    (all ? ' — --all-accepted: both final norms zeroed, every draft accepted (τ = block): the ceiling of a perfect drafter'
      : ' — τ and acceptance of a random drafter say nothing about drafting quality');
  return { target, drafter, random: all ? `${preset}-all-accepted` : preset, describe };
}

/** The mesh a bench runs on: `--tp N` devices per replica (tensor parallelism), `--dp M` replicas. */
export function meshArgs(): { tensorParallel: number; dataParallel: number } {
  const tensorParallel = Number(arg('tp', '1')), dataParallel = Number(arg('dp', '1'));
  for (const [k, v] of [['tp', tensorParallel], ['dp', dataParallel]] as const)
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be an integer >= 1, got '${arg(k, '')}'`);
  return { tensorParallel, dataParallel };
}

/** Result file name: `<name>[-random-<preset>]-<platform>[-tpN][-dpM].md`. */
export function resultFile(name: string, m: Models, client: NativeClient): string {
  const { tensorParallel, dataParallel } = meshArgs();
  const mesh = (tensorParallel > 1 ? `-tp${tensorParallel}` : '') + (dataParallel > 1 ? `-dp${dataParallel}` : '');
  return `${name}${m.random ? `-random-${m.random}` : ''}-${client.platformName}${mesh}.md`;
}

/** The mesh line of a table: devices, and on the CPU plugin that its virtual devices share the cores. */
export function meshLine(stats: { mesh: { tensorParallel: number; dataParallel: number; replicas: { devices: { id: number }[] }[] } }, platform: string): string {
  const m = stats.mesh;
  const ids = m.replicas.map((r) => r.devices.map((d) => d.id).join(',')).join(' | ');
  return `- mesh: tensor parallel ${m.tensorParallel} x data parallel ${m.dataParallel} (devices ${ids})` +
    (platform === 'cpu' && m.tensorParallel * m.dataParallel > 1
      ? `; the CPU plugin's ${m.tensorParallel * m.dataParallel} virtual devices share this machine's ${os.cpus().length} cores: the table proves the plumbing, not a speed-up`
      : '');
}

/** The machine line every table starts with. */
export function machine(client: Pick<NativeClient, 'platformName' | 'platformVersion' | 'pluginPath'>): string {
  const cpus = os.cpus();
  const plat = `${client.platformName} (${client.platformVersion})`;
  const cpuNote = client.platformName === 'cpu' ? ' — absolute times are XLA CPU-plugin measurements' : '';
  return `- machine: ${cpus[0]?.model ?? 'unknown'} x${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ` +
    `${os.platform()} ${os.release()}; node ${process.version}; PJRT platform ${plat}, plugin ${path.basename(client.pluginPath)}${cpuNote}`;
}

/** Prints the table and writes it to `--out`, or to bench/results/<file>. */
export function publish(lines: string[], file: string): void {
  const table = lines.join('\n');
  console.log(table);
  const out = arg('out', path.join('bench', 'results', file));
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, table + '\n');
  console.error(`(written to ${out})`);
}

export function run(main: () => Promise<void>): void {
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
