// Quantized weights kept narrow on the device against the same model in f32 / bf16, side by side
// in one run: a random-weight checkpoint at a published shape (tools/shapes/make_random.py),
// quantized by tools/quant/quantize.py into each scheme, each loaded in a fresh process
// (bench/shapes-worker.ts) for device weight bytes, decode ms/token and verify(16), once with the
// payloads narrow on the device and once expanded at load (Engine option quantizedWeights).
//   npm run bench:quantized -- [--shape qwen3-0.6b|qwen3-4b|mini] [--schemes int8-channel,int4-g128,fp8-b128]
//                              [--dtype f32|bf16] [--dir DIR] [--hlo DIR]
// --hlo DIR: XLA's optimized HLO of every program of the first quantized variant lands in DIR
// (XLA_FLAGS=--xla_dump_to), to read whether the expansion fused into the dot (bench/NOTES.md).
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { packageRoot } from '../lib/native';
import { Client } from '../lib/runtime';
import { makeRandomShape } from '../test/helpers/random-shape';
import { arg, machine, publish, run } from './common';

const ROOT = packageRoot();
// tools/quant/quantize.py: in this checkout, or (the device kit, whose compiled package lives in
// its own directory) in the tree it runs from.
const QUANTIZE = [ROOT, process.cwd(), path.join(__dirname, '..', '..')].map((d) => path.join(d, 'tools', 'quant', 'quantize.py'))
  .find((f) => fs.existsSync(f)) ?? path.join(ROOT, 'tools', 'quant', 'quantize.py');

function worker(dir: string, cache: string, dtype: string, quantized: string, hlo?: string): Record<string, any> {
  const env = { ...process.env };
  if (hlo) env.XLA_FLAGS = `${env.XLA_FLAGS ?? ''} --xla_dump_to=${hlo} --xla_dump_hlo_as_text --xla_dump_hlo_pass_re=^$`.trim();
  const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'bench', 'shapes-worker.js'), dir, '--cache', cache, '--ks', '1,16', '--dtype', dtype, '--quantized', quantized],
    { encoding: 'utf8', env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`shapes-worker ${dir} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

async function main(): Promise<void> {
  const shape = arg('shape', 'qwen3-0.6b');
  const schemes = arg('schemes', 'int8-channel,int4-g128,fp8-b128').split(',');
  const dtype = arg('dtype', 'f32');
  const base = arg('dir', path.join(os.tmpdir(), `dflash-quant-${shape}`));
  const src = path.join(base, 'f32');
  if (!fs.existsSync(path.join(src, 'model.safetensors'))) makeRandomShape(shape, src, { dtype: 'f32' });
  // numpy (+ ml_dtypes for fp8): $DFLASH_PYTHON (the device kit's), ./.venv, or python3.
  const py = [process.env.DFLASH_PYTHON, path.join(ROOT, '.venv', 'bin', 'python'), 'python3']
    .find((p) => p && spawnSync(p, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0) ?? 'python3';
  for (const s of schemes) {
    const out = path.join(base, s);
    if (!fs.existsSync(path.join(out, 'model.safetensors')))
      execFileSync(py, [QUANTIZE, src, out, '--scheme', s, '--scale-dtype', 'BF16'], { stdio: 'inherit' });
  }
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-quant-cache-'));
  const hlo = arg('hlo', '');
  const rows: [string, Record<string, any>][] = [[`${dtype} weights`, worker(src, cache, dtype, 'auto')]];
  schemes.forEach((s, i) => rows.push([`${s}, narrow`, worker(path.join(base, s), cache, dtype, 'narrow', i === 0 && hlo ? hlo : undefined)]));
  // The same checkpoints expanded once at load (quantizedWeights 'dequantize', the CPU default).
  schemes.forEach((s) => rows.push([`${s}, expanded at load`, worker(path.join(base, s), cache, dtype, 'dequantize')]));
  fs.rmSync(cache, { recursive: true, force: true });

  const c = await Client.open();
  const ref = rows[0][1];
  const cfg = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8'));
  const gb = (x: number) => (x / 1e9).toFixed(3);
  const lines = [
    `# Quantized weights on the device: ${shape} (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(c),
    `- RANDOM weights at the published shape (hidden ${cfg.hidden_size}, ${cfg.num_hidden_layers} layers, vocab ${cfg.vocab_size}, ` +
      `tied embedding kept ${dtype}); every *_proj matrix quantized by tools/quant/quantize.py, scales bf16; activations ${dtype}`,
    '- decode: plain greedy, one stream, median step; verify(16): one target forward of 16 tokens; peak RSS: the worker process\'s (on CPU the device memory is the host\'s) (bench/shapes-worker.ts)',
    '',
    `| weights | device weight bytes | vs ${dtype} | decode ms/token | vs ${dtype} | verify(16) ms | vs ${dtype} | peak RSS |`,
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(([name, r]) => `| ${name} | ${gb(r.weightBytes)} GB | ${(r.weightBytes / ref.weightBytes).toFixed(2)} | ` +
      `${r.decodeMs.toFixed(1)} | ${(r.decodeMs / ref.decodeMs).toFixed(2)} | ${(r.verify[16] * 1000).toFixed(1)} | ${(r.verify[16] / ref.verify[16]).toFixed(2)} | ` +
      `${gb(r.peak)} GB |`),
  ];
  c.dispose();
  publish(lines, `quantized-${shape}-${dtype}-cpu.md`);
}

run(main);
