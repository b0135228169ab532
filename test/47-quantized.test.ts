// Quantized checkpoints whose Linear weights stay narrow on the device (lib/quantization.ts,
// native/models/quant.h): compressed-tensors int8 / int4 / fp8 (with and without zero points),
// Qwen's block FP8 and AutoAWQ gemm.
//
// The oracle chain: compressed-tensors' own pack_to_int32 / unpack_from_int32 / dequantize and
// AutoAWQ's dequantize_gemm (tools/quant/check_reference.py; its output is the committed golden)
// check the numpy writer
// tools/quant/quantize.py, which writes each quantized checkpoint together with its f32
// dequantization; the engine on that f32 copy is itself checked against transformers (test/13).
// The engine must run a quantized checkpoint exactly as its f32 copy: the same greedy tokens and
// bit-identical log-probabilities, while the device holds the payloads in their stored width
// (quantizedWeights 'narrow'), and again when they are expanded at load (the CPU's default).
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { readSafetensorsHeader } from '../lib/safetensors';
import { tmpDir } from './helpers/tiny-model';

const ROOT = path.join(__dirname, '..');
const MODELS = path.join(__dirname, 'fixtures', 'models');
const CODE_PAIR = path.join(ROOT, 'models', 'code-pair');
const PY = path.join(ROOT, '.venv', 'bin', 'python');  // numpy + ml_dtypes (scripts/setup.sh)
const QUANTIZE = path.join(ROOT, 'tools', 'quant', 'quantize.py');
let dir: string;

beforeAll(() => {
  dir = tmpDir('dflash-quant47-');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Writes `src` quantized with `scheme` and its f32 dequantization; returns both directories. */
function quantize(src: string, scheme: string, extra: string[] = []): { quantized: string; copy: string } {
  const name = `${path.basename(src)}-${scheme}${extra.length ? '-' + extra.join('').replace(/\W/g, '') : ''}`;
  const quantized = path.join(dir, name), copy = path.join(dir, `${name}-f32`);
  if (!fs.existsSync(quantized)) execFileSync(PY, [QUANTIZE, src, quantized, '--scheme', scheme, '--dequantized-out', copy, ...extra], { stdio: 'inherit' });
  return { quantized, copy };
}

type Quantized = 'narrow' | 'dequantize' | 'auto';
async function greedy(target: string, opts: { dtype?: 'f32' | 'bf16'; tensorParallel?: number; quantizedWeights?: Quantized } = {}) {
  const engine = await Engine.load({ target, maxSeqLen: 64, maxSequences: 1, dtype: opts.dtype ?? 'f32', tensorParallel: opts.tensorParallel,
    quantizedWeights: opts.quantizedWeights ?? 'narrow', warmup: false });
  try {
    const done = await engine.generate([3, 17, 42, 99, 5, 64, 7], { maxTokens: 12, speculative: false, logprobs: 3 }).done();
    const stats = engine.stats();
    return {
      ids: done.ids, logprobs: done.logprobs!.map((l) => [l.logprob, ...l.top.map((t) => t.logprob)]),
      deviceBytes: stats.mesh.replicas[0].devices.map((d) => d.weightBytes), reason: stats.dtypeReason,
    };
  } finally {
    await engine.close();
  }
}

/** What the device should hold for a checkpoint run in f32: payloads in their stored bytes, every
 *  other tensor (scales included) as f32; `weight_shape` is metadata. */
function expectedDeviceBytes(checkpoint: string): number {
  let n = 0;
  for (const t of readSafetensorsHeader(path.join(checkpoint, 'model.safetensors'))) {
    if (t.name.endsWith('.weight_shape')) continue;
    const elements = t.shape.reduce((a, b) => a * b, 1);
    // Zero points are held as f32 like the scales: one per int8, eight per packed int32 word
    // (AWQ's qweight, also int32 words, is re-laid into the same number of bytes).
    if (/\.(weight_zero_point|qzeros)$/.test(t.name)) n += (t.dtype === 'I32' ? 8 : 1) * elements * 4;
    else n += ['I8', 'I32', 'F8_E4M3'].includes(t.dtype) ? t.nbytes : elements * 4;
  }
  return n;
}

describe('the writer packs and dequantizes as compressed-tensors and AutoAWQ do', () => {
  it('int32 words, zero points and f32 weights equal the references\' (golden from tools/quant/check_reference.py)', () => {
    const golden = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'goldens', 'compressed-tensors-pack.json'), 'utf8'));
    expect(golden.reference).toMatch(/^compressed-tensors .*AutoAWQ/);
    const cases = Object.fromEntries(Object.entries(golden).filter(([k]) => k !== 'reference'));
    expect(Object.keys(cases).sort()).toEqual(['awq-g32', 'int4-channel', 'int4-g32', 'int4-g32-zp', 'int8-channel', 'int8-g32']);
    const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(path.dirname(QUANTIZE))})
import numpy as np
from quantize import pack_int32, pack_awq, expand
out = {}
for name, c in json.load(sys.stdin).items():
    s = np.array(c['scale'], np.float32)
    if name == 'awq-g32':  # (in, out) values, (in/g, out) zeros and scales
        q, z = np.array(c['values'], np.int32), np.array(c['zero'], np.int32)
        out[name] = {'qweight': pack_awq(q).tolist(), 'qzeros': pack_awq(z).tolist(),
                     'dequantized': ((q - np.repeat(z, 32, axis=0)).astype(np.float32) * np.repeat(s, 32, axis=0)).tolist()}
        continue
    q = np.array(c['values'], np.int8)
    bits = 4 if name.startswith('int4') else 8
    group = int(name.split('-g')[1].split('-')[0]) if '-g' in name else q.shape[1]
    z = expand(np.array(c['zero'], np.int8), q.shape, 1, group).astype(np.float32) if 'zero' in c else 0
    out[name] = {'words': pack_int32(q, bits).tolist(), 'dequantized': ((q.astype(np.float32) - z) * expand(s, q.shape, 1, group)).tolist()}
    if 'zero' in c:
        out[name]['zero_words'] = pack_int32(np.array(c['zero'], np.int8).T.copy(), 4).T.tolist()
print(json.dumps(out))`;
    const ours = JSON.parse(execFileSync(PY, ['-c', script], { input: JSON.stringify(cases) }).toString());
    for (const [name, c] of Object.entries(cases) as [string, Record<string, unknown>][]) {
      for (const k of ['words', 'zero_words', 'qweight', 'qzeros', 'dequantized']) if (c[k]) expect(ours[name][k], `${name} ${k}`).toEqual(c[k]);
    }
  });
});

describe('transformers reading the same files (compressed-tensors decompressing them) agrees', () => {
  // Goldens from tools/quant/make_goldens.py: transformers 5.25 loads these checkpoints with the
  // format's own decompression and decodes greedily in f32 (top-2 margins >= 0.024, far above f32
  // rounding, so the tokens must be identical).
  const golden = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'goldens', 'quantized-transformers.json'), 'utf8'));
  it.each(['qwen3-f32 int4-g32', 'llama-f32 int8-g32', 'qwen2-f32 fp8-channel'])('%s, narrow on the device', async (key) => {
    const [model, scheme] = key.split(' ');
    const g = golden[key] as { ids: number[]; logprobs: number[] };
    expect(golden.prompt).toEqual([3, 17, 42, 99, 5, 64, 7]);  // greedy()'s prompt
    const a = await greedy(quantize(path.join(MODELS, model), scheme).quantized);
    expect(a.ids).toEqual(g.ids);
    a.logprobs.forEach((l, i) => expect(Math.abs(l[0] - g.logprobs[i]), `step ${i}`).toBeLessThan(2e-4));
  });
});

describe('each scheme runs exactly its f32 dequantization, with the payload narrow on the device', () => {
  const cases: [string, string, string, string[]][] = [
    ['compressed-tensors int8 per channel (naive-quantized)', 'qwen3-f32', 'int8-channel', []],
    ['compressed-tensors int4 groups of 32 (pack-quantized)', 'qwen3-f32', 'int4-g32', []],
    ['compressed-tensors int8 groups of 32 (pack-quantized, Llama)', 'llama-f32', 'int8-g32', []],
    ['compressed-tensors fp8 per channel (float-quantized, Qwen2 biases)', 'qwen2-f32', 'fp8-channel', []],
    ['Qwen FP8 blocks of 32x32, bf16 scales, one module left in 16 bits', 'qwen3-f32', 'fp8-b32',
      ['--scale-dtype', 'BF16', '--ignore', 'model.layers.1.mlp.down_proj']],
    ['int4 MoE experts (Qwen3-MoE)', 'qwen3-moe-f32', 'int4-g32', []],
    ['compressed-tensors int4 with zero points packed along the rows', 'qwen3-f32', 'int4-g32-zp', []],
    ['compressed-tensors int8 per channel with int8 zero points (Llama)', 'llama-f32', 'int8-channel-zp', []],
    ['AutoAWQ gemm, f16 scales (Qwen2: transposed words in AWQ order, re-laid at load)', 'qwen2-f32', 'awq-g32', ['--scale-dtype', 'F16']],
  ];
  it.each(cases)('%s', async (_label, model, scheme, extra) => {
    const { quantized, copy } = quantize(path.join(MODELS, model), scheme, extra);
    const [a, b] = [await greedy(quantized), await greedy(copy)];
    expect(a.ids).toEqual(b.ids);
    expect(a.logprobs).toEqual(b.logprobs);
    expect(a.reason).toMatch(/Linear weights kept narrow on the device \((int8|int4|fp8)/);
    if (scheme.endsWith('zp') || scheme.startsWith('awq')) expect(a.reason).toMatch(/ zp /);
    // Measured from PJRT's buffer sizes: payload bytes as stored, not 4 bytes per weight.
    expect(a.deviceBytes[0]).toBe(expectedDeviceBytes(quantized));
    expect(a.deviceBytes[0]).toBeLessThan(b.deviceBytes[0]);
    // Expanded once at load instead (the CPU's default): the same numbers, f32 on the device.
    const c = await greedy(quantized, { quantizedWeights: 'auto' });
    expect(c.reason).toMatch(/quantized Linear weights \((int8|int4|fp8).*\) expanded at load to f32 \(quantizedWeights auto on cpu/);
    expect(c.ids).toEqual(b.ids);
    expect(c.logprobs).toEqual(b.logprobs);
    expect(c.deviceBytes).toEqual(b.deviceBytes);
  });

  it('in bf16 the quantized model equals its copy rounded to bf16 (the expansion rounds once, as a bf16 checkpoint is)', async () => {
    const { quantized, copy } = quantize(path.join(MODELS, 'qwen3-f32'), 'int4-g32');
    const [a, b] = [await greedy(quantized, { dtype: 'bf16' }), await greedy(copy, { dtype: 'bf16' })];
    expect(a.ids).toEqual(b.ids);
    expect(a.logprobs).toEqual(b.logprobs);
  });
});

describe('a quantized target under speculation and over a mesh', () => {
  it('int8 code-pair target + f32 drafter: speculative == plain greedy, and accepts as the f32 copy does', async () => {
    // int8 groups: close enough to the f32 target its drafter was trained on to keep drafting
    // well (int4 of this 6.8M-parameter toy moves it far enough that τ drops to 1.7).
    const { quantized, copy } = quantize(path.join(CODE_PAIR, 'target'), 'int8-g32');
    const run = async (target: string, speculative: boolean) => {
      const engine = await Engine.load({ target, drafter: path.join(CODE_PAIR, 'drafter'), maxSeqLen: 128, maxSequences: 1, dtype: 'f32',
        adaptive: false, quantizedWeights: 'narrow', warmup: false });
      try {
        const d = await engine.generate('def main():\n', { maxTokens: 48, ...(speculative ? {} : { speculative: false as const }) }).done();
        return { ids: d.ids, perPosition: d.stats.perPositionAcceptance, tau: d.stats.meanAcceptanceLength };
      } finally {
        await engine.close();
      }
    };
    const spec = await run(quantized, true);
    expect(spec.ids).toEqual((await run(quantized, false)).ids);
    expect(spec).toEqual(await run(copy, true));
    expect(spec.tau).toBeGreaterThan(2.5);  // the drafter still drafts for its (now int8) target
  });

  it('a quantized drafter (int4 zero points, narrow) drafts exactly as its f32 copy: same tokens, same acceptance at every position', async () => {
    const { quantized, copy } = quantize(path.join(CODE_PAIR, 'drafter'), 'int4-g32-zp');
    const run = async (drafter: string) => {
      const engine = await Engine.load({ target: path.join(CODE_PAIR, 'target'), drafter, maxSeqLen: 128, maxSequences: 1, dtype: 'f32',
        adaptive: false, quantizedWeights: 'narrow', warmup: false });
      try {
        const d = await engine.generate('def main():\n', { maxTokens: 48 }).done();
        return { ids: d.ids, perPosition: d.stats.perPositionAcceptance, reason: engine.stats().dtypeReason };
      } finally {
        await engine.close();
      }
    };
    const [a, b] = [await run(quantized), await run(copy)];
    expect(a.reason).toMatch(/kept narrow on the device \(drafter int4 zp g32\)/);
    expect({ ...a, reason: '' }).toEqual({ ...b, reason: '' });
  });

  it('over 2 devices each holds its half of the payloads and the tokens stay those of one device', async () => {
    const { quantized } = quantize(path.join(CODE_PAIR, 'target'), 'int4-g32');
    const one = await greedy(quantized), two = await greedy(quantized, { tensorParallel: 2 });
    expect(two.ids).toEqual(one.ids);
    expect(two.deviceBytes).toHaveLength(2);
    // Split weights halve; embeddings, norms and per-channel data stay whole: each device holds
    // well under what one device does, and the two together at least all of it.
    for (const d of two.deviceBytes) expect(d).toBeLessThan(one.deviceBytes[0] * 0.75);
    expect(two.deviceBytes[0] + two.deviceBytes[1]).toBeGreaterThanOrEqual(one.deviceBytes[0]);
  });

  it('a mesh that would cut a scale block is refused naming the weight and the numbers', async () => {
    // k_proj: 2 KV heads x 64 = 128 rows; over 2 devices 64 rows each, not whole 128-row blocks.
    const { quantized } = quantize(path.join(CODE_PAIR, 'target'), 'fp8-b128');
    await expect(Engine.load({ target: quantized, tensorParallel: 2, maxSeqLen: 64, quantizedWeights: 'narrow', warmup: false }))
      .rejects.toThrow(/k_proj\.weight \(128, 256\) split over 2 devices gives each 64 rows, not whole fp8 b128x128 scale blocks of 128/);
  });
});

describe('the CLI', () => {
  it('dflash generate --quantized-weights picks narrow or expanded weights, and names a typo', () => {
    const { quantized } = quantize(path.join(MODELS, 'qwen3-f32'), 'awq-g32', ['--scale-dtype', 'F16']);
    const cli = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'dist', 'lib', 'cli.js'), 'generate', '--target', quantized,
      '--max-tokens', '4', ...args, 'hello'], { encoding: 'utf8' });
    const narrow = cli('--quantized-weights', 'narrow');
    expect(narrow.status, narrow.stderr).toBe(0);
    expect(narrow.stderr).toMatch(/Linear weights kept narrow on the device \(int4 zp g32\)/);
    expect(cli().stderr).toMatch(/quantized Linear weights \(int4 zp g32\) expanded at load to f32 \(quantizedWeights auto on cpu/);
    const typo = cli('--quantized-weights', 'narow');
    expect(typo.status).not.toBe(0);
    expect(typo.stderr).toMatch(/--quantized-weights must be auto, narrow or dequantize, got 'narow'/);
  });
});

describe('quantized checkpoints dflash does not run are refused naming the key or the tensor', () => {
  let base: string;
  beforeAll(() => {
    base = quantize(path.join(MODELS, 'qwen3-f32'), 'int4-g32').quantized;
  });
  const withConfig = (name: string, edit: (qc: Record<string, any>) => void) => {
    const out = path.join(dir, name);
    fs.cpSync(base, out, { recursive: true });
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    edit(cfg.quantization_config);
    fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(cfg));
    return out;
  };
  const weights = (qc: Record<string, any>) => qc.config_groups.group_0.weights;

  it.each([
    ['zero points the checkpoint does not hold', (qc: any) => { weights(qc).symmetric = false; },
      /asymmetric weight model\.layers\.0\.\S+\.weight_packed has no model\.layers\.0\.\S+\.weight_zero_point/],
    ['activation quantization (W8A8)', (qc: any) => { qc.config_groups.group_0.input_activations = { num_bits: 8, type: 'int', dynamic: true }; },
      /input_activations is set: activation quantization \(W8A8, FP8 dynamic\) is not supported/],
    ['act-order', (qc: any) => { weights(qc).actorder = 'group'; }, /weights\.actorder "group" is not supported \(act-order g_idx\)/],
    ['an unknown format', (qc: any) => { qc.format = 'marlin-24'; }, /quantization_config\.format "marlin-24" is not supported/],
    ['2:4 sparsity', (qc: any) => { qc.sparsity_config = { format: 'sparse-24-bitmask', sparsity_structure: '2:4' }; }, /sparsity_config is not supported/],
    ['GPTQ', (qc: any) => { qc.quant_method = 'gptq'; }, /quantization_config\.quant_method "gptq" is not supported yet/],
    ['AWQ gemv', (qc: any) => { Object.assign(qc, { quant_method: 'awq', version: 'gemv', bits: 4, group_size: 32 }); },
      /quantization_config\.version "gemv" is not supported \(gemm\)/],
    ['AWQ config over compressed-tensors tensors', (qc: any) => { Object.assign(qc, { quant_method: 'awq', version: 'gemm', bits: 4, group_size: 32 }); },
      /tensor model\.layers\.0\.\S+\.weight_packed is not part of an AWQ gemm checkpoint/],
    ['a scheme the tensors do not have', (qc: any) => { qc.format = 'int-quantized'; weights(qc).num_bits = 8; },
      /tensor model\.layers\.0\.\S+\.weight_packed is I32, which is not how compressed-tensors int-quantized int8 group 32 stores a weight/],
  ])('%s', async (name, edit, message) => {
    const target = withConfig(name.replace(/\W+/g, '-'), edit);
    await expect(Engine.load({ target, warmup: false })).rejects.toThrow(message);
  });
});
