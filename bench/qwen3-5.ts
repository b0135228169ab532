// A hybrid target (Qwen3.5: Gated DeltaNet + gated attention) beside an attention-only one of
// similar size (Qwen3), side by side in one run, on random checkpoints at published widths
// (tools/shapes/make_qwen3_5.py: Qwen3.5-0.8B's and Qwen3-0.6B's, the same depth and vocabulary).
// Each model loads in a fresh process (bench/shapes-worker.ts): weight bytes, the recurrent state
// bytes per sequence, KV bytes per token, decode ms/token, verify(1) and verify(16) (what a DFlash
// step pays: K-flat or not), prefill tokens/s — for Qwen3.5 twice: as the engine runs it (whole
// chunks of 64 in the chunked form) and in calls of 32 tokens (no whole chunk: token by token).
//   npm run bench:qwen3-5 -- [--layers 8] [--vocab 8192] [--dtype bf16] [--prefill 512] [--dir DIR] [--mini]
// --mini: narrow widths (the device kit's CI run); --dir holding the two checkpoints (DIR/qwen3_5,
// DIR/qwen3) uses them as they are.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { packageRoot } from '../lib/native';
import { Client } from '../lib/runtime';
import { arg, flag, machine, publish, run } from './common';

const ROOT = packageRoot();

function worker(dir: string, dtype: string, prefill: number, extra: string[] = []): Record<string, any> {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'bench', 'shapes-worker.js'), dir, '--cache', '', '--ks', '1,16', '--dtype', dtype,
    '--prefill', String(prefill), ...extra], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`shapes-worker ${dir} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

async function main(): Promise<void> {
  const layers = Number(arg('layers', '8')), dtype = arg('dtype', 'bf16'), prefill = Number(arg('prefill', '512'));
  const mini = flag('mini') ? ['--mini'] : [];
  const vocab = arg('vocab', '8192');
  const dir = arg('dir', path.join(os.tmpdir(), `dflash-qwen3_5-${layers}`));
  const py = [process.env.DFLASH_PYTHON, path.join(ROOT, '.venv', 'bin', 'python'), 'python3']
    .find((p) => p && spawnSync(p, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0) ?? 'python3';
  const models: [string, string, string[]][] = [
    [`Qwen3.5 (${mini.length ? 'mini' : '0.8B'} widths)`, path.join(dir, 'qwen3_5'), mini],
    [`Qwen3 (${mini.length ? 'mini' : '0.6B'} widths)`, path.join(dir, 'qwen3'), ['--qwen3', ...mini]],
  ];
  for (const [, out, extra] of models)
    if (!fs.existsSync(path.join(out, 'model.safetensors')))
      execFileSync(py, [path.join(ROOT, 'tools', 'shapes', 'make_qwen3_5.py'), '--out', out, '--layers', String(layers), '--vocab', vocab, '--dtype', dtype, ...extra], { stdio: 'inherit' });
  const rows = models.map(([name, out]) => [name, JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')), worker(out, dtype, prefill)] as const);
  const stepwise = worker(models[0][1], dtype, prefill, ['--prefill-chunk', '32']);
  const c = await Client.open();
  const mb = (x: number) => (x / 2 ** 20).toFixed(2);
  const lines = [
    `# Hybrid (Qwen3.5) vs attention-only (Qwen3) target kernels (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(c),
    `- RANDOM ${dtype} weights, ${rows[0][1].num_hidden_layers} layers each, vocab ${rows[0][1].vocab_size} (tools/shapes/make_qwen3_5.py${mini.length ? ' --mini' : ''}): ` +
      `Qwen3.5 at ${mini.length ? 'narrow (CI)' : "Qwen3.5-0.8B's"} widths (hidden ${rows[0][1].hidden_size}: ${rows[0][1].num_hidden_layers * 3 / 4} Gated DeltaNet + ` +
      `${rows[0][1].num_hidden_layers / 4} gated attention layers), Qwen3 at ${mini.length ? 'the mini shape' : "Qwen3-0.6B's"}`,
    '- decode: plain greedy, one stream, median step; verify(K): one target forward of K tokens at context 64 (probe timeVerify, median of 5); ' +
      `prefill: a ${prefill}-token prompt to its first token (second run); state: the recurrent state one sequence holds (conv windows + f32 states); ` +
      'KV/token: K and V bytes a position adds (attention layers only)',
    '',
    '| target | weight MB | state MB / sequence | KV bytes / token | decode ms/token | verify(1) ms | verify(16) ms | verify(16) / verify(1) | prefill tokens/s |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const [name, , r] of rows) {
    const state = r.recurrentState ? mb(r.recurrentState.bytesPerSequence) : '0';
    lines.push(`| ${name} | ${mb(r.weightBytes)} | ${state} | ${r.pageBytes / r.pageSize} | ${r.decodeMs.toFixed(1)} | ${(r.verify[1] * 1000).toFixed(1)} | ` +
      `${(r.verify[16] * 1000).toFixed(1)} | ${(r.verify[16] / r.verify[1]).toFixed(2)} | ${(r.prefill.tokens / r.prefill.seconds).toFixed(0)} |`);
  }
  lines.push(`| ${rows[0][0]}, prefill in calls of 32 (token by token) | | | | | | | | ${(stepwise.prefill.tokens / stepwise.prefill.seconds).toFixed(0)} |`);
  const [h, a] = [rows[0][2], rows[1][2]];
  lines.push('', `Ratios (Qwen3.5 / Qwen3): weight bytes ${(h.weightBytes / a.weightBytes).toFixed(2)}, decode ${(h.decodeMs / a.decodeMs).toFixed(2)}, ` +
    `verify(16) ${(h.verify[16] / a.verify[16]).toFixed(2)}, prefill time ${(h.prefill.seconds / a.prefill.seconds).toFixed(2)}; ` +
    `Qwen3.5's prefill, chunked form / token by token: ${(stepwise.prefill.seconds / h.prefill.seconds).toFixed(2)}x faster`);
  const slug = c.platformName === 'cpu' ? 'cpu' : c.platformName;
  c.dispose();
  publish(lines, `qwen3_5-vs-qwen3-${mini.length ? 'mini' : `${layers}L`}-${dtype}-${slug}.md`);
}

run(main);
