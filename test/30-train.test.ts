// The training tool (tools/train, JAX) end to end on tiny shapes: corpus -> tokenizer + target ->
// DFlash drafter, the losses fall, and the saved drafter loads in dflash and keeps greedy output
// lossless. A smoke run of the tool, not the training of the shipped pair.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { spawnAsync } from './helpers/spawn-async';
import { tmpDir } from './helpers/tiny-model';

const ROOT = path.join(__dirname, '..');
const PY = path.join(ROOT, '.venv-train', 'bin', 'python');
const TRAIN = path.join(ROOT, 'tools', 'train');

async function py(args: string[]): Promise<string> {
  const r = await spawnAsync(PY, args, { cwd: ROOT, env: { ...process.env, PYTHONUNBUFFERED: '1' } });
  if (r.status !== 0) throw new Error(`${path.basename(args[0])} exited with ${r.status ?? r.signal}:\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}

describe('tools/train --tiny', () => {
  it('trains a target and a drafter whose output dflash decodes losslessly', async () => {
    expect(fs.existsSync(PY), 'the training venv (.venv-train) is installed by scripts/setup.sh').toBe(true);
    const dir = tmpDir('dflash-train-');
    const data = path.join(dir, 'data');
    const prompts = path.join(dir, 'prompts.jsonl');
    await py([path.join(TRAIN, 'corpus.py'), '--data', data, '--prompts', prompts, '--num-prompts', '4']);
    const common = ['--train-text', path.join(data, 'train.txt')];
    await py([path.join(TRAIN, 'target.py'), '--tiny', '--out', path.join(dir, 'target'), '--tokenizer', path.join(dir, 'tok'),
      '--heldout-text', path.join(data, 'heldout.txt'), ...common]);
    await py([path.join(TRAIN, 'drafter.py'), '--tiny', '--target', path.join(dir, 'target'), '--out', path.join(dir, 'drafter'),
      '--prompts', prompts, ...common]);

    for (const stage of ['target', 'drafter']) {
      const rec = JSON.parse(fs.readFileSync(path.join(dir, stage, 'training.json'), 'utf8'));
      expect(rec.final_train_loss, `${stage} loss falls`).toBeLessThan(rec.first_logged_train_loss);
    }
    const dcfg = JSON.parse(fs.readFileSync(path.join(dir, 'drafter', 'config.json'), 'utf8'));
    expect(dcfg.architectures).toEqual(['DFlashDraftModel']);

    const engine = await Engine.load({ target: path.join(dir, 'target'), drafter: path.join(dir, 'drafter'), maxSeqLen: 256, maxSequences: 1 });
    try {
      const lines = fs.readFileSync(prompts, 'utf8').trim().split('\n').map((l) => JSON.parse(l).prompt as string);
      for (const p of lines.slice(0, 3)) {
        const plain = await engine.generate(p, { maxTokens: 32, speculative: false }).done();
        const spec = await engine.generate(p, { maxTokens: 32 }).done();
        expect(spec.ids).toEqual(plain.ids);
      }
    } finally {
      engine.dispose();
    }
  });
});
