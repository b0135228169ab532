// Writes the tiny random-weight checkpoints that the oracle goldens are computed on
// (test/fixtures/models). Deterministic: re-running rewrites identical files.
//   npx tsx tools/oracle/make-fixtures.ts   (or: npx vite-node tools/oracle/make-fixtures.ts)
// The Qwen3-MoE and gpt-oss targets are written by transformers itself (make_moe_fixtures.py,
// make_gpt_oss_fixtures.py, run first);
// this script only replaces the directories it writes, and reads the MoE target's config for its
// drafter.
import * as fs from 'fs';
import * as path from 'path';

import { makeDrafter, makeTarget } from '../../test/helpers/tiny-model';

const root = path.join(__dirname, '..', '..', 'test', 'fixtures', 'models');
const fresh = (name: string) => {
  const dir = path.join(root, name);
  fs.rmSync(dir, { recursive: true, force: true });
  return dir;
};

// Qwen3, f32, GQA 4/2, head_dim 16, untied; and its DFlash drafter (block 8, 2 layers).
const q = makeTarget(fresh('qwen3-f32'), { family: 'qwen3', vocab: 256, hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, seed: 11 });
makeDrafter(fresh('qwen3-f32-dflash'), q, { layers: 2, blockSize: 8, targetLayerIds: [0, 1], seed: 12 });
// A second drafter shape: 1 layer, MQA, head_dim 32, block 4, one feature layer.
makeDrafter(fresh('qwen3-f32-dflash-b4'), q, { layers: 1, heads: 2, kvHeads: 1, headDim: 32, blockSize: 4, targetLayerIds: [1], seed: 13 });
// Sliding-window drafter as the published ones mix them ([S, ..., F]): layer 0 a window of 6
// (smaller than the block of 8, so block keys are windowed too), layer 1 full attention.
makeDrafter(fresh('qwen3-f32-dflash-swa'), q, { layers: 2, blockSize: 8, targetLayerIds: [0, 1], seed: 14, slidingWindow: 6, layerTypes: ['sliding_attention', 'full_attention'] });
// DFlash2 drafters (docs/DRAFTERS.md §5): convolutions of 2 taps over groups of 16 channels, a
// selector of rank 16 over the top 8 candidates, the logit transforms of the published config; and
// 3 taps over groups of 8, top 4, rank 8, a sliding layer (window 6 < block 8) then a full one.
makeDrafter(fresh('qwen3-f32-dflash2'), q, {
  layers: 2, blockSize: 8, targetLayerIds: [0, 1], seed: 16,
  dflash2: { kernel: 2, groupSize: 16, rank: 16, topK: 8, outputMultiplier: 0.5, softcap: 6 },
});
makeDrafter(fresh('qwen3-f32-dflash2-swa'), q, {
  layers: 2, blockSize: 8, targetLayerIds: [1, 0], seed: 17, slidingWindow: 6, layerTypes: ['sliding_attention', 'full_attention'],
  dflash2: { kernel: 3, groupSize: 8, rank: 8, topK: 4 },
});
// Qwen3, bf16, tied embeddings, MQA (1 kv head), head_dim 32 != hidden/heads, 3 layers, 2 shards.
makeTarget(fresh('qwen3-bf16-tied'), { family: 'qwen3', vocab: 256, hidden: 64, layers: 3, heads: 4, kvHeads: 1, headDim: 32, tie: true, bf16: true, shards: 2, seed: 21 });
// Llama, f32, GQA 4/2, llama3 rope scaling.
makeTarget(fresh('llama-f32'), {
  family: 'llama', vocab: 256, hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, seed: 31,
  ropeScaling: { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 64 },
});
// A DFlash drafter for the transformers-written Qwen3-MoE target (features of both its layers).
const moeConfig = path.join(root, 'qwen3-moe-f32', 'config.json');
if (!fs.existsSync(moeConfig)) throw new Error(`${moeConfig} is missing: run tools/oracle/make_moe_fixtures.py first`);
makeDrafter(fresh('qwen3-moe-f32-dflash'), JSON.parse(fs.readFileSync(moeConfig, 'utf8')), { layers: 2, blockSize: 8, targetLayerIds: [0, 1], seed: 15 });
// A DFlash drafter for the transformers-written gpt-oss target (make_gpt_oss_fixtures.py, run first):
// features of a sliding and a full layer, block 8, attention biases as the published gpt-oss drafters.
const ossConfig = path.join(root, 'gpt-oss-f32', 'config.json');
if (!fs.existsSync(ossConfig)) throw new Error(`${ossConfig} is missing: run tools/oracle/make_gpt_oss_fixtures.py first`);
makeDrafter(fresh('gpt-oss-f32-dflash'), JSON.parse(fs.readFileSync(ossConfig, 'utf8')), { layers: 2, blockSize: 8, targetLayerIds: [0, 3], seed: 18, attentionBias: true });
// A DFlash drafter for the transformers-written Qwen3.5 target (make_qwen3_5_fixtures.py, run
// first; its text model's keys are under text_config): features of a DeltaNet and the attention layer.
const q35Config = path.join(root, 'qwen3_5-f32', 'config.json');
if (!fs.existsSync(q35Config)) throw new Error(`${q35Config} is missing: run tools/oracle/make_qwen3_5_fixtures.py first`);
makeDrafter(fresh('qwen3_5-f32-dflash'), JSON.parse(fs.readFileSync(q35Config, 'utf8')).text_config, { layers: 2, blockSize: 8, targetLayerIds: [1, 3], seed: 19 });
console.log(`fixtures written to ${root}`);
