// gpt-oss's MXFP4 experts kept 4-bit on the device against the same checkpoint expanded at load,
// side by side in one run, on a random checkpoint at gpt-oss-20b's layer widths
// (tools/shapes/make_gpt_oss.py: hidden 2880, 64 / 8 heads, expert width 2880, top 4; fewer
// layers and experts so it fits this machine). Each variant loads in a fresh process
// (bench/shapes-worker.ts): device weight bytes, the experts' share, decode ms/token, verify(16).
// Then the KV one sequence holds at long contexts: the sliding layers in their fixed rings
// (models/sliding_ring.h) against every attention layer in pages, from the engine's own stats.
//   npm run bench:gpt-oss -- [--layers 2] [--experts 8] [--dtypes bf16,f32] [--dir DIR]
// --dir holding a checkpoint already (the device kit writes a narrower one for CI) uses it as is.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { packageRoot } from '../lib/native';
import { Client } from '../lib/runtime';
import { arg, machine, publish, run } from './common';

const ROOT = packageRoot();

function worker(dir: string, dtype: string, quantized: string): Record<string, any> {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'bench', 'shapes-worker.js'), dir, '--cache', '', '--ks', '1,16', '--dtype', dtype, '--quantized', quantized],
    { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`shapes-worker ${dir} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

async function main(): Promise<void> {
  const layers = Number(arg('layers', '2')), experts = Number(arg('experts', '8'));
  const dtypes = arg('dtypes', 'bf16,f32').split(',');
  const dir = arg('dir', path.join(os.tmpdir(), `dflash-gpt-oss-${layers}x${experts}`));
  const py = [process.env.DFLASH_PYTHON, path.join(ROOT, '.venv', 'bin', 'python'), 'python3']
    .find((p) => p && spawnSync(p, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0) ?? 'python3';
  if (!fs.existsSync(path.join(dir, 'model.safetensors')))
    execFileSync(py, [path.join(ROOT, 'tools', 'shapes', 'make_gpt_oss.py'), '--out', dir, '--layers', String(layers), '--experts', String(experts)], { stdio: 'inherit' });
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const H = cfg.hidden_size, I = cfg.intermediate_size, E = cfg.num_local_experts, L = cfg.num_hidden_layers;
  const expertWeights = L * E * 3 * I * H;  // gate_up (2I x H) + down (H x I) per expert
  const rows: [string, number, Record<string, any>][] = [];
  for (const dtype of dtypes) {
    const bytes = dtype === 'bf16' ? 2 : 4;
    rows.push([`MXFP4 experts narrow, ${dtype} activations`, expertWeights * (0.5 + 1 / 32), worker(dir, dtype, 'narrow')]);
    rows.push([`experts expanded at load to ${dtype}`, expertWeights * bytes, worker(dir, dtype, 'dequantize')]);
  }
  const c = await Client.open();
  const gb = (x: number) => (x / 1e9).toFixed(3);
  const lines = [
    `# gpt-oss MXFP4 experts on the device (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(c),
    `- RANDOM weights at gpt-oss-20b's layer widths (hidden ${H}, ${cfg.num_attention_heads} / ${cfg.num_key_value_heads} heads of ${cfg.head_dim}, ` +
      `expert width ${I}, top ${cfg.num_experts_per_tok}) with ${L} layers, ${E} experts and vocab ${cfg.vocab_size} (tools/shapes/make_gpt_oss.py); experts MXFP4 as released, the rest bf16`,
    '- decode: plain greedy, one stream, median step; verify(16): one target forward of 16 tokens; peak RSS: the worker process\'s (bench/shapes-worker.ts). ' +
      'Each pair of rows is one dtype: the ratio column divides by the expanded row of that dtype',
    '',
    '| experts | expert bytes (per weight) | device weight bytes | decode ms/token | vs expanded | verify(16) ms | vs expanded | peak RSS |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (let i = 0; i < rows.length; i += 2)
    for (const [name, eb, r] of [rows[i], rows[i + 1]]) {
      const ref = rows[i + 1][2];
      lines.push(`| ${name} | ${gb(eb)} GB (${(eb / expertWeights).toFixed(3)}) | ${gb(r.weightBytes)} GB | ${r.decodeMs.toFixed(1)} | ` +
        `${(r.decodeMs / ref.decodeMs).toFixed(2)} | ${(r.verify[16] * 1000).toFixed(1)} | ${(r.verify[16] / ref.verify[16]).toFixed(2)} | ${gb(r.peak)} GB |`);
    }
  // KV per sequence: pages of the full layers + one ring, against the sliding layers in pages too
  // (a ring page costs what a sliding layer's page would).
  const st = rows[0][2];
  const ring = st.slidingWindow as { layers: number; window: number; ringPages: number; bytesPerSequence: number } | null;
  if (ring) {
    const S = st.pageSize, slidingPage = ring.bytesPerSequence / ring.ringPages, mb = (x: number) => (x / 2 ** 20).toFixed(1);
    lines.push('', `KV one sequence holds (${rows[0][0]}'s engine: page size ${S}, ${ring.layers} sliding layer(s) of window ${ring.window} in rings of ` +
      `${ring.ringPages} pages, the other attention layers in pages; per layer the ratio is the same at gpt-oss-20b's 24 layers):`, '',
      '| context (tokens) | sliding layers in rings | every layer in pages | ratio |', '|---|---|---|---|');
    for (const n of [1024, 8192, 32768, 131072]) {
      const pages = Math.ceil(n / S), rings = pages * st.pageBytes + ring.bytesPerSequence, all = pages * (st.pageBytes + slidingPage);
      lines.push(`| ${n} | ${mb(rings)} MiB | ${mb(all)} MiB | ${(all / rings).toFixed(2)}x |`);
    }
  }
  c.dispose();
  publish(lines, `gpt-oss-mxfp4-${L}x${E}-cpu.md`);
}

run(main);
