// The speculators format of a drafter (vllm-project/speculators) runs like the z-lab original:
// the shipped code-pair drafter converted as speculators' DFlashConverter converts it (config
// rewritten, target layers counted from 1, the body tensors unchanged plus the embedding and LM
// head copied from the verifier) gives token-for-token the same speculative output, with the
// same drafts accepted at every step.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { readCheckpoint, writeSafetensors } from '../lib/safetensors';
import { toSpeculatorsConfig } from './helpers/speculators';
import { tmpDir } from './helpers/tiny-model';

const PAIR = path.join(__dirname, '..', 'models', 'code-pair');

// Reads F32 tensors straight from the shipped checkpoint (header offsets from readCheckpoint).
function readF32(dir: string, names: string[]): { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] {
  const all = readCheckpoint(dir);
  return names.map((name) => {
    const t = all.find((x) => x.name === name);
    if (!t || t.dtype !== 'F32') throw new Error(`${dir}: no F32 tensor ${name}`);
    const buf = Buffer.alloc(t.nbytes);
    const fd = fs.openSync(t.file, 'r');
    fs.readSync(fd, buf, 0, t.nbytes, t.offset);
    fs.closeSync(fd);
    return { name, dtype: 'F32', shape: t.shape, data: new Float32Array(buf.buffer, buf.byteOffset, t.nbytes / 4) };
  });
}

function convertToSpeculators(): string {
  const dir = tmpDir('dflash-speculators-');
  const zlab = JSON.parse(fs.readFileSync(path.join(PAIR, 'drafter', 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(toSpeculatorsConfig(zlab, path.join(PAIR, 'target'), { diffDict: true }), null, 2));
  const body = readF32(path.join(PAIR, 'drafter'), readCheckpoint(path.join(PAIR, 'drafter')).map((t) => t.name));
  const verifier = readF32(path.join(PAIR, 'target'), ['model.embed_tokens.weight', 'lm_head.weight'])
    .map((t) => ({ ...t, name: t.name.replace('model.', '') }));
  writeSafetensors(path.join(dir, 'model.safetensors'), [...body, ...verifier]);
  return dir;
}

describe('a speculators-format drafter', () => {
  let zlab: Engine, speculators: Engine;
  beforeAll(async () => {
    // adaptive: false: the step structure is compared, and the adaptive policy's blocks follow
    // measured times, which differ between two engines.
    const opts = { target: path.join(PAIR, 'target'), maxSeqLen: 256, maxSequences: 1, adaptive: false };
    zlab = await Engine.load({ ...opts, drafter: path.join(PAIR, 'drafter') });
    speculators = await Engine.load({ ...opts, drafter: convertToSpeculators() });
  });
  afterAll(() => {
    zlab?.dispose();
    speculators?.dispose();
  });

  it('loads to the same drafter config', () => {
    expect(speculators.config.drafter).toEqual(zlab.config.drafter);
  });

  it('drafts and accepts exactly as the z-lab original', async () => {
    const prompts = ['def fibonacci(n):\n    ', 'import os\nimport sys\n\n\ndef main():\n', 'class Stack:\n    def __init__(self):\n'];
    let accepted = 0;
    for (const prompt of prompts) {
      const ids = zlab.tokenizer.encode(prompt);
      const run = async (engine: Engine) => {
        const steps: number[][] = [];
        const stream = engine.generate(ids, { maxTokens: 48, speculative: { blockSize: 16 } });
        stream.on('step', (s) => steps.push(s.acceptedIds));
        return { done: await stream.done(), steps };
      };
      const a = await run(zlab), b = await run(speculators);
      expect(b.done.ids, prompt).toEqual(a.done.ids);
      expect(b.steps, prompt).toEqual(a.steps);
      expect(a.steps.length).toBe(a.done.stats.steps);
      expect(a.steps.every((s) => Array.isArray(s) && s.length > 0)).toBe(true);
      accepted += a.done.stats.acceptanceRate;
    }
    expect(accepted).toBeGreaterThan(0);  // the trained pair accepts drafts: the drafter really ran
  });
});
