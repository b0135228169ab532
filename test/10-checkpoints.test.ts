// Loading checkpoints: safetensors headers (single and sharded), config.json mapping for Qwen3 /
// Llama / DFlash drafters, load progress, the on-disk compile cache, and a clear error for every
// kind of broken input (missing tensor, wrong shape, unsupported dtype, truncated file,
// malformed header, unsupported config).
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { drafterConfigFromHF, targetConfigFromHF } from '../lib/config';
import { Engine, LoadProgress } from '../lib/engine';
import { readCheckpoint, readSafetensorsHeader, writeSafetensors } from '../lib/safetensors';
import { makeTarget, tmpDir } from './helpers/tiny-model';

const MODELS = path.join(__dirname, 'fixtures', 'models');
const qwenCfg = () => JSON.parse(fs.readFileSync(path.join(MODELS, 'qwen3-f32', 'config.json'), 'utf8'));

describe('safetensors', () => {
  it('reads single and sharded checkpoints by header only', () => {
    const single = readCheckpoint(path.join(MODELS, 'qwen3-f32'));
    expect(single.find((t) => t.name === 'model.embed_tokens.weight')).toMatchObject({ dtype: 'F32', shape: [256, 64], nbytes: 256 * 64 * 4 });
    const sharded = readCheckpoint(path.join(MODELS, 'qwen3-bf16-tied'));
    expect(new Set(sharded.map((t) => path.basename(t.file))).size).toBe(2);
    expect(sharded.every((t) => t.dtype === 'BF16')).toBe(true);
    expect(sharded.some((t) => t.name === 'lm_head.weight')).toBe(false);  // tied
  });

  it('rejects truncated files and malformed headers with the file name', () => {
    const dir = tmpDir();
    const f = path.join(dir, 'x.safetensors');
    writeSafetensors(f, [{ name: 'a', dtype: 'F32', shape: [4, 4], data: new Float32Array(16) }]);
    const good = fs.readFileSync(f);
    fs.writeFileSync(f, good.subarray(0, good.length - 8));
    expect(() => readSafetensorsHeader(f)).toThrow(/x\.safetensors: truncated: tensor a/);
    fs.writeFileSync(f, Buffer.concat([Buffer.from([200, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"a": 1}')]));
    expect(() => readSafetensorsHeader(f)).toThrow(/malformed header/);
    const bad = Buffer.from('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(bad.length));
    fs.writeFileSync(f, Buffer.concat([len, bad, Buffer.alloc(8)]));
    expect(() => readSafetensorsHeader(f)).toThrow(/4 bytes for F32\[2\], which needs 8/);
    fs.writeFileSync(f, Buffer.from([1, 2, 3]));
    expect(() => readSafetensorsHeader(f)).toThrow(/truncated/);
    expect(() => readSafetensorsHeader(path.join(dir, 'missing.safetensors'))).toThrow(/cannot open/);
  });

  it('rejects dtypes the engine cannot load', () => {
    const dir = tmpDir();
    writeSafetensors(path.join(dir, 'model.safetensors'), [{ name: 'w', dtype: 'I32', shape: [2], data: new Int32Array(2) }]);
    expect(() => readCheckpoint(dir)).toThrow(/tensor w has dtype I32/);
  });
});

describe('config.json', () => {
  it('maps Qwen3, Llama (llama3 RoPE) and DFlash drafter configs', () => {
    const q = targetConfigFromHF(qwenCfg());
    expect(q).toMatchObject({ family: 'qwen3', vocabSize: 256, hiddenSize: 64, numHeads: 4, numKvHeads: 2, headDim: 16, qkNorm: true, ropeLlama3: null });
    const l = targetConfigFromHF(JSON.parse(fs.readFileSync(path.join(MODELS, 'llama-f32', 'config.json'), 'utf8')));
    expect(l).toMatchObject({ family: 'llama', qkNorm: false, ropeLlama3: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } });
    const d = drafterConfigFromHF(JSON.parse(fs.readFileSync(path.join(MODELS, 'qwen3-f32-dflash', 'config.json'), 'utf8')), q);
    expect(d).toMatchObject({ blockSize: 8, maskTokenId: 255, targetLayerIds: [0, 1], numLayers: 2, inputEmbeddingScale: 1, ropeLlama3: null });
    const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const dl = JSON.parse(fs.readFileSync(path.join(MODELS, 'qwen3-f32-dflash', 'config.json'), 'utf8'));
    expect(drafterConfigFromHF({ ...dl, rope_scaling: scaling }, q).ropeLlama3).toEqual({ factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  });

  it('reads transformers 5 rope_parameters', () => {
    const { rope_theta: _, ...rest } = qwenCfg();
    expect(targetConfigFromHF({ ...rest, rope_parameters: { rope_type: 'default', rope_theta: 5e5 } }).ropeTheta).toBe(5e5);
    const l = targetConfigFromHF({
      ...rest, model_type: 'llama', architectures: ['LlamaForCausalLM'],
      rope_parameters: { rope_type: 'llama3', rope_theta: 5e5, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
    });
    expect(l.ropeTheta).toBe(5e5);
    expect(l.ropeLlama3).toEqual({ factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 });
  });

  it('names the key of an unsupported or inconsistent config', () => {
    expect(() => targetConfigFromHF({ ...qwenCfg(), model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] })).toThrow(/Qwen3, Qwen2, Llama, gpt-oss and Qwen3.5/);
    expect(() => targetConfigFromHF({ ...qwenCfg(), rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(/rope_scaling type "yarn"/);
    expect(() => targetConfigFromHF({ ...qwenCfg(), hidden_size: 'big' })).toThrow(/'hidden_size'/);
    const q = targetConfigFromHF(qwenCfg());
    const d = JSON.parse(fs.readFileSync(path.join(MODELS, 'qwen3-f32-dflash', 'config.json'), 'utf8'));
    expect(() => drafterConfigFromHF({ ...d, architectures: ['Qwen3ForCausalLM'] }, q)).toThrow(/DFlashDraftModel/);
    expect(() => drafterConfigFromHF({ ...d, hidden_size: 128 }, q)).toThrow(/hidden_size 128 differs/);
    expect(() => drafterConfigFromHF({ ...d, dflash_config: { mask_token_id: 999, target_layer_ids: [0] } }, q)).toThrow(/mask_token_id/);
    expect(() => drafterConfigFromHF({ ...d, dflash_config: { mask_token_id: 5, target_layer_ids: [7] } }, q)).toThrow(/target_layer_ids entry 7/);
  });
});

describe('Engine.load', () => {
  it('reports progress and loads bf16 sharded weights', async () => {
    const all: LoadProgress[] = [];
    const e = await Engine.load({ target: path.join(MODELS, 'qwen3-bf16-tied'), maxSeqLen: 64, maxSequences: 1, onProgress: (p) => all.push(p) });
    e.dispose();
    const events = all.filter((p): p is Extract<LoadProgress, { phase: 'weights' }> => p.phase === 'weights');
    // Weights first, then the warm-up programs (compiled, or loaded from the disk cache).
    const firstProgram = all.findIndex((p) => p.phase === 'program');
    expect(firstProgram).toBeGreaterThan(events.length - 1);
    expect(all.slice(firstProgram).every((p) => p.phase === 'program')).toBe(true);
    const last = events[events.length - 1];
    expect(last.tensors).toBe(last.totalTensors);
    expect(last.bytes).toBe(last.totalBytes);
    expect(events.length).toBe(last.totalTensors);
    expect(events.every((p, i) => i === 0 || p.bytes >= events[i - 1].bytes)).toBe(true);
  });

  it('a missing tensor or a wrong shape names the tensor', async () => {
    const dir = tmpDir();
    makeTarget(dir, { vocab: 256, seed: 3 });
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 3 }));
    // Found from the headers, before anything is allocated: the file, the key and the checkpoint's truth.
    await expect(Engine.load({ target: dir, maxSeqLen: 64 })).rejects.toThrow(/config\.json: num_hidden_layers 3 does not match the checkpoint, which holds 2 layers/);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 96 }));
    await expect(Engine.load({ target: dir, maxSeqLen: 64 })).rejects.toThrow(/mlp\.gate_proj\.weight .* has shape \[128,64\], expected \[96,64\]/);
  });

  it('a second start loads compiled programs from the disk cache instead of compiling', async () => {
    const cacheDir = tmpDir('dflash-cache-');
    const run = async () => {
      const e = await Engine.load({ target: path.join(MODELS, 'qwen3-f32'), maxSeqLen: 64, maxSequences: 1, cacheDir });
      const done = await e.generate([5, 6, 7], { maxTokens: 4 }).done();
      const stats = e.stats();
      e.dispose();
      return { ids: done.ids, stats };
    };
    const first = await run();
    const second = await run();
    expect(first.stats.compiles).toBeGreaterThan(0);
    expect(second.stats.compiles).toBe(0);
    expect(second.stats.diskCacheHits).toBe(first.stats.compiles);
    expect(second.ids).toEqual(first.ids);
  });
});
