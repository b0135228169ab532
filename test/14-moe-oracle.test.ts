// Qwen3-MoE, the equations against transformers: tools/oracle/moe_ref.py (numpy, written from
// the router softmax -> top-k -> optional renormalisation -> weighted expert sum; the equations
// native/models/moe.h implements) reproduces the committed goldens of transformers'
// Qwen3MoeForCausalLM on tiny checkpoints written by transformers (tools/oracle/make_moe_fixtures.py):
// logits of every prompt position, hidden states after every layer, and the greedy continuation.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { targetConfigFromHF } from '../lib/config';
import { readCheckpoint } from '../lib/safetensors';
import { makeTarget, tmpDir } from './helpers/tiny-model';

const ROOT = path.join(__dirname, '..');
const FIX = path.join(__dirname, 'fixtures');
const PYTHON = [path.join(ROOT, '.venv', 'bin', 'python'), 'python3'].find((p) => p === 'python3' || fs.existsSync(p))!;

interface Golden {
  oracle: { transformers: string };
  cases: { prompt_ids: number[]; logits: number[]; greedy_ids: number[]; hidden_after_layer: number[][]; router_topk_margin: number }[];
}

function reference(model: string, ids: number[], greedy: number): { logits: number[][]; hidden_after_layer: number[][][]; greedy: number[] } {
  const out = execFileSync(PYTHON, [path.join(ROOT, 'tools', 'oracle', 'moe_ref.py'), '--model', path.join(FIX, 'models', model),
    '--ids', JSON.stringify(ids), '--greedy', String(greedy)], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(out);
}

function worstError(got: number[], want: number[], rtol: number): number {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) - rtol * Math.abs(want[i]));
  return worst;
}

describe.each(['qwen3-moe-f32', 'qwen3-moe-mixed-f32'])('%s', (name) => {
  const golden: Golden = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens', `${name}.json`), 'utf8'));
  const cfg = JSON.parse(fs.readFileSync(path.join(FIX, 'models', name, 'config.json'), 'utf8'));
  const target = targetConfigFromHF(cfg, undefined, { moe: true });

  it('is a transformers-written checkpoint in the hub layout (one tensor per expert and projection)', () => {
    const names = new Set(readCheckpoint(path.join(FIX, 'models', name)).map((t) => t.name));
    target.moe!.sparseLayers.forEach((sparse, l) => {
      expect(names.has(`model.layers.${l}.mlp.gate.weight`), `layer ${l} router`).toBe(sparse);
      expect(names.has(`model.layers.${l}.mlp.gate_proj.weight`), `layer ${l} dense MLP`).toBe(!sparse);
      for (let e = 0; e < target.moe!.numExperts; e++) expect(names.has(`model.layers.${l}.mlp.experts.${e}.down_proj.weight`)).toBe(sparse);
    });
    expect([...names].some((n) => n.includes('gate_up_proj'))).toBe(false);  // not transformers 5's fused in-memory layout
  });

  it('routes with clear margins (the goldens are only meaningful if no top-k choice is a near tie)', () => {
    for (const c of golden.cases) expect(c.router_topk_margin).toBeGreaterThan(1e-3);
  });

  it("the numpy reference reproduces transformers' logits, hidden states and greedy tokens", () => {
    for (const c of golden.cases) {
      const ref = reference(name, c.prompt_ids, c.greedy_ids.length);
      expect(worstError(ref.logits.flat(), c.logits, 1e-4), `logits, prompt of ${c.prompt_ids.length}`).toBeLessThan(1e-4);
      ref.hidden_after_layer.forEach((h, l) =>
        expect(worstError(h.flat(), c.hidden_after_layer[l], 1e-4), `hidden after layer ${l}`).toBeLessThan(1e-4));
      expect(ref.greedy, `greedy continuation of a prompt of ${c.prompt_ids.length}`).toEqual(c.greedy_ids);
    }
  });
});

describe('test/helpers/tiny-model.ts Qwen3-MoE writer (further shapes for engine tests)', () => {
  it('writes the hub layout its config describes, which the reference runs', () => {
    const dir = tmpDir('dflash-moe-');
    const cfg = makeTarget(dir, { family: 'qwen3_moe', vocab: 64, hidden: 32, layers: 4, heads: 4, kvHeads: 2, headDim: 8, seed: 5,
      moe: { experts: 6, topK: 3, intermediate: 16, normTopkProb: false, sparseStep: 2, mlpOnlyLayers: [3], localExpertsKey: true } });
    const t = targetConfigFromHF(cfg, undefined, { moe: true });
    expect(t.moe).toMatchObject({ numExperts: 6, numExpertsPerTok: 3, normTopkProb: false, sparseLayers: [false, true, false, false] });
    const shapes = new Map(readCheckpoint(dir).map((x) => [x.name, x.shape]));
    expect(shapes.get('model.layers.1.mlp.gate.weight')).toEqual([6, 32]);
    expect(shapes.get('model.layers.1.mlp.experts.5.down_proj.weight')).toEqual([32, 16]);
    expect(shapes.get('model.layers.3.mlp.up_proj.weight')).toEqual([t.intermediateSize, 32]);
    expect([...shapes.keys()].filter((n) => n.includes('.experts.')).length).toBe(6 * 3);
    const ref = JSON.parse(execFileSync(PYTHON, [path.join(ROOT, 'tools', 'oracle', 'moe_ref.py'), '--model', dir, '--ids', '[1, 2, 3]', '--greedy', '2'], { encoding: 'utf8' }));
    expect(ref.logits.length).toBe(3);
    expect(ref.greedy.length).toBe(2);
  });
});
