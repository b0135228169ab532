// The drafter graph against a second, plain implementation written from the equations
// (tools/oracle/drafter_ref.py, numpy): draft logits over several context lengths, block sizes
// and GQA / head_dim shapes, on random-weight drafters in the z-lab layout. Context features
// come from the target's own hidden states (checked against transformers in 06).
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { draftsAgainstReference } from './helpers/drafter-reference';

const MODELS = path.join(__dirname, 'fixtures', 'models');
const TARGET = path.join(MODELS, 'qwen3-f32');

const engines: Engine[] = [];
afterAll(() => engines.forEach((e) => e.dispose()));

describe.each([
  ['qwen3-f32-dflash', 8],      // 2 layers, GQA 4/2, head_dim 16, features of target layers [0, 1]
  ['qwen3-f32-dflash', 4],      // the same drafter with its block overridden downwards
  ['qwen3-f32-dflash-b4', 4],   // 1 layer, MQA 2/1, head_dim 32, features of layer [1] only
  ['qwen3-f32-dflash-swa', 8],  // z-lab sliding window 6 (< block) in layer 0, full layer 1; contexts past the window
])('%s, block %i', (name, block) => {
  it('draft logits equal the numpy reference over several context lengths', async () => {
    const drafterDir = path.join(MODELS, name);
    const engine = await Engine.load({ target: TARGET, drafter: drafterDir, maxSeqLen: 128, maxSequences: 1 });
    engines.push(engine);
    for (const { n, last, draft, ref } of await draftsAgainstReference(engine, 'drafter_ref.py', drafterDir, TARGET, block))
      // The draft is [last, argmax of rows 1..B-1].
      expect(draft, `context ${n}`).toEqual([last, ...ref.argmax.slice(1)]);
  });
});
