// The drafter graph against a second, plain implementation written from the equations
// (tools/oracle/drafter_ref.py, numpy): draft logits over several context lengths, block sizes
// and GQA / head_dim shapes, on random-weight drafters in the z-lab layout. Context features
// come from the target's own hidden states (checked against transformers in 06).
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { draftLogits, scoreLogits } from '../lib/internal/probe';

const ROOT = path.join(__dirname, '..');
const MODELS = path.join(__dirname, 'fixtures', 'models');
const PYTHON = [path.join(ROOT, '.venv', 'bin', 'python'), 'python3'].find((p) => p === 'python3' || fs.existsSync(p))!;

function reference(drafter: string, features: number[][], last: number, block: number): { logits: number[][]; argmax: number[] } {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-ref-')), 'case.json');
  fs.writeFileSync(file, JSON.stringify({ features, last_token: last, block_size: block }));
  const out = execFileSync(PYTHON, [path.join(ROOT, 'tools', 'oracle', 'drafter_ref.py'), '--drafter', drafter,
    '--target', path.join(MODELS, 'qwen3-f32'), '--input', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(out);
}

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
    const engine = await Engine.load({ target: path.join(MODELS, 'qwen3-f32'), drafter: drafterDir, maxSeqLen: 128, maxSequences: 1 });
    engines.push(engine);
    const ids = engine.config.drafter!.targetLayerIds;
    const H = engine.config.target.hiddenSize;
    const V = engine.config.target.vocabSize;
    for (const [n, last] of [[1, 7], [5, 200], [17, 33], [40, 129]]) {
      const prompt = Int32Array.from({ length: n }, (_, i) => (i * 37 + 11) % V);
      const { hidden } = await scoreLogits(engine, [prompt], { hiddenLayers: ids });
      const feats = hidden![0];
      const rows: number[][] = [];
      for (let t = 0; t < n; t++) rows.push(Array.from(feats.subarray(t * ids.length * H, (t + 1) * ids.length * H)));
      const mine = await draftLogits(engine, feats, n, last, block);
      const ref = reference(drafterDir, rows, last, block);
      expect(mine.logits.length).toBe(block * V);
      let worst = 0;
      for (let r = 0; r < block; r++)
        for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(mine.logits[r * V + v] - ref.logits[r][v]) - 1e-4 * Math.abs(ref.logits[r][v]));
      expect(worst, `context ${n}: worst logit difference`).toBeLessThan(2e-3);
      // The draft is [last, argmax of rows 1..B-1].
      expect(Array.from(mine.draft)).toEqual([last, ...ref.argmax.slice(1)]);
    }
  });
});
