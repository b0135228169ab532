// Real-scale shapes on this machine: random-weight checkpoints at the published Qwen3-0.6B and
// Qwen3-4B shapes (+ the 4B's DFlash drafter: 5 layers, taps [1, 9, 17, 25, 33], block 16),
// written once (tools/shapes/make_random.py), then loaded twice in fresh processes — first start (compiles) and
// second start (disk cache) — reporting load s, compile s, peak RSS against weights + KV pool,
// decode ms/token against the memory roofline (weight bytes / the streaming bandwidth XLA reaches
// here, measured), verify(K)/verify(1) for K = 1..32, and the draft's cost.
//   npm run bench:shapes -- --shape qwen3-0.6b|qwen3-4b|mini [--drafter] [--dtype auto|f32|bf16] [--dir DIR] [--keep]
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { packageRoot } from '../lib/native';
import { Client } from '../lib/runtime';
import { makeRandomShape } from '../test/helpers/random-shape';
import { arg, flag, machine, publish, run } from './common';

async function bandwidth(): Promise<number> {
  // Bytes per second XLA streams through a sum over 1 GiB of f32 (what a memory-bound decode can
  // hope for on this machine, all cores).
  const c = await Client.open();
  const n = 1 << 28;
  const exe = await c.compile(`module @m { func.func public @main(%x: tensor<${n}xf32>) -> tensor<f32> {
    %z = "stablehlo.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
    %r = "stablehlo.reduce"(%x, %z) ({ ^bb0(%a: tensor<f32>, %b: tensor<f32>):
      %s = "stablehlo.add"(%a, %b) : (tensor<f32>, tensor<f32>) -> tensor<f32>
      "stablehlo.return"(%s) : (tensor<f32>) -> () }) {dimensions = array<i64: 0>} : (tensor<${n}xf32>, tensor<f32>) -> tensor<f32>
    "func.return"(%r) : (tensor<f32>) -> () } }`);
  const x = await c.upload(new Float32Array(n).fill(1), 'f32', [n]);
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const [o] = await exe.execute([x], { keep: [0] });
    await o.toHost();
    times.push((performance.now() - t0) / 1000);
    o.dispose();
  }
  x.dispose();
  exe.dispose();
  c.dispose();
  times.sort((a, b) => a - b);
  return (n * 4) / times[3];
}

function worker(args: string[]): Record<string, any> {
  // Compiled (npx tsc): plain node, so the child's memory is the engine's, not a bundler's.
  const r = spawnSync(process.execPath, [path.join(packageRoot(), 'dist', 'bench', 'shapes-worker.js'), ...args],
    { encoding: 'utf8', env: process.env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`shapes-worker failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function describeDrafter(dir: string): string {
  const d = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  return `${d.num_hidden_layers} layers, taps [${d.dflash_config.target_layer_ids.join(', ')}], block ${d.block_size}`;
}

async function main(): Promise<void> {
  const name = arg('shape', 'qwen3-0.6b');
  const withDrafter = flag('drafter');
  const base = arg('dir', path.join(os.tmpdir(), `dflash-shape-${name}`));
  const target = path.join(base, 'target'), drafter = path.join(base, 'drafter');
  const t0 = performance.now();
  if (!fs.existsSync(path.join(target, 'model.safetensors')) || (withDrafter && !fs.existsSync(path.join(drafter, 'model.safetensors'))))
    makeRandomShape(name, target, { drafter: withDrafter ? drafter : undefined });
  const shape = JSON.parse(fs.readFileSync(path.join(target, 'config.json'), 'utf8'));
  const writeSeconds = (performance.now() - t0) / 1000;
  const drafterText = withDrafter ? describeDrafter(drafter) : '';  // read before the directory is removed
  const fileBytes = fs.statSync(path.join(target, 'model.safetensors')).size;
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-shape-cache-'));
  const bw = await bandwidth();
  const ks = arg('ks', '1,2,4,8,16,32');
  const common = ['--cache', cache, '--ks', ks, '--dtype', arg('dtype', 'auto')];
  const first = worker([target, ...(withDrafter ? [drafter] : []), ...common]);
  const second = worker([target, ...(withDrafter ? [drafter] : []), ...common]);
  fs.rmSync(cache, { recursive: true, force: true });
  if (!flag('keep') && !process.argv.includes('--dir')) fs.rmSync(base, { recursive: true, force: true });

  const c = await Client.open();
  const gb = (x: number) => (x / 1e9).toFixed(2);
  const roof = (first.weightBytes / bw) * 1000;
  const kList = ks.split(',').map(Number);
  const lines = [
    `# Real-scale shape: ${name} (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(c),
    `- RANDOM weights at the published shape (tools/shapes/make_random.py): hidden ${shape.hidden_size}, ${shape.num_hidden_layers} layers, ` +
      `vocab ${shape.vocab_size}, bf16 file ${gb(fileBytes)} GB${withDrafter ? `; DFlash drafter ${drafterText}` : ''}` +
      ` (written in ${writeSeconds.toFixed(0)} s); engine dtype ${first.dtype} (${first.reason})`,
    `- memory roofline: weight bytes / ${(bw / 1e9).toFixed(1)} GB/s (XLA streaming a 1 GiB sum on this machine, measured now)`,
    '',
    '| | first start | second start (disk cache) |',
    '|---|---|---|',
    `| load (weights to device) | ${first.loadSeconds.toFixed(1)} s | ${second.loadSeconds.toFixed(1)} s |`,
    `| programs at start | ${first.compiles} compiled, ${first.compileSeconds.toFixed(1)} s | ${second.diskHits} from disk, ${second.compileSeconds.toFixed(1)} s |`,
    `| ready (load + warm-up) | ${first.startSeconds.toFixed(1)} s | ${second.startSeconds.toFixed(1)} s |`,
    `| peak RSS after load / overall | ${gb(first.peakLoad)} / ${gb(first.peak)} GB | ${gb(second.peakLoad)} / ${gb(second.peak)} GB |`,
    `| weights on device + KV pool | ${gb(first.weightBytes)} + ${gb(first.kvBytes)} GB (peak ${(first.peak / (first.weightBytes + first.kvBytes)).toFixed(2)}x) | |`,
    `| decode (plain, context ~40) | ${first.decodeMs.toFixed(1)} ms/token | ${second.decodeMs.toFixed(1)} ms/token |`,
    `| memory roofline | ${roof.toFixed(1)} ms/token (decode at ${(first.decodeMs / roof).toFixed(2)}x) | |`,
    '',
    '| K | verify(K) ms | verify(K) / verify(1) |',
    '|---|---|---|',
    ...kList.map((k) => `| ${k} | ${(first.verify[k] * 1000).toFixed(1)} | ${(first.verify[k] / first.verify[1]).toFixed(2)} |`),
  ];
  if (withDrafter) lines.push('', `draft(16): ${(first.draft * 1000).toFixed(1)} ms = ${(first.draft / first.verify[16]).toFixed(2)} x verify(16); ` +
    `a speculative generation ran: ${first.spec.tokens} tokens in ${first.spec.steps} steps (random weights: acceptance means nothing)`);
  c.dispose();
  publish(lines, `shapes-${name}-${first.dtype}-cpu.md`);
}

run(main);
