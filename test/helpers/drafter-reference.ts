// Drafter graphs against their numpy references (tools/oracle/drafter_ref.py for DFlash,
// drafter2_ref.py for DFlash2): the target's own hidden states at several context lengths go to
// both, and the draft logits must agree. Shared by test/15 and test/19, which then check the
// draft tokens their way (per-row argmax, or the DFlash2 selector's walk).
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'vitest';

import { Engine } from '../../lib/engine';
import { draftLogits, scoreLogits } from '../../lib/internal/probe';

const ROOT = path.join(__dirname, '..', '..');
const PYTHON = [path.join(ROOT, '.venv', 'bin', 'python'), 'python3'].find((p) => p === 'python3' || fs.existsSync(p))!;

/** What a reference script prints: logits (block, V), their per-row argmax, and (DFlash2) the selector's draft. */
export interface ReferenceDraft { logits: number[][]; argmax: number[]; draft?: number[] }

/** Runs tools/oracle/`script` on one case: context features (one row per position), the last token, the block. */
export function referenceDraft(script: string, drafter: string, target: string, features: number[][], last: number, block: number): ReferenceDraft {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-ref-')), 'case.json');
  fs.writeFileSync(file, JSON.stringify({ features, last_token: last, block_size: block }));
  const out = execFileSync(PYTHON, [path.join(ROOT, 'tools', 'oracle', script), '--drafter', drafter, '--target', target, '--input', file],
    { encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(out);
}

export interface DraftCase { n: number; last: number; draft: number[]; ref: ReferenceDraft }

/** For contexts of 1, 5, 17 and 40 tokens: the engine's draft logits equal the reference's
 *  (within 2e-3 + 1e-4 relative); returns each case's draft tokens and the reference for the caller's checks. */
export async function draftsAgainstReference(engine: Engine, script: string, drafter: string, target: string, block: number): Promise<DraftCase[]> {
  const ids = engine.config.drafter!.targetLayerIds;
  const H = engine.config.target.hiddenSize, V = engine.config.target.vocabSize;
  const cases: DraftCase[] = [];
  for (const [n, last] of [[1, 7], [5, 200], [17, 33], [40, 129]]) {
    const prompt = Int32Array.from({ length: n }, (_, i) => (i * 37 + 11) % V);
    const feats = (await scoreLogits(engine, [prompt], { hiddenLayers: ids })).hidden![0];
    const rows: number[][] = [];
    for (let t = 0; t < n; t++) rows.push(Array.from(feats.subarray(t * ids.length * H, (t + 1) * ids.length * H)));
    const mine = await draftLogits(engine, feats, n, last, block);
    const ref = referenceDraft(script, drafter, target, rows, last, block);
    expect(mine.logits.length).toBe(block * V);
    let worst = 0;
    for (let r = 0; r < block; r++)
      for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(mine.logits[r * V + v] - ref.logits[r][v]) - 1e-4 * Math.abs(ref.logits[r][v]));
    expect(worst, `context ${n}: worst logit difference`).toBeLessThan(2e-3);
    cases.push({ n, last, draft: Array.from(mine.draft), ref });
  }
  return cases;
}
