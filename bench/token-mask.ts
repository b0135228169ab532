// What the shared verify program costs a batch that no grammar constrains (issue 22: "a grammar's
// token mask is an input every verify takes unless the bench shows that costs more than 3% of a
// step"). Times one verify (timeVerify: the program an iteration runs, plus its one transfer) in
// three forms, interleaved round by round on one engine so drift hits them alike:
//   none        a program built without the token_mask input (what free batches ran before)
//   allow-all   the serving program with the all-ones mask a free batch sends (masking skipped)
//   constrained the same program with a mask refusing every other token (the masking runs)
//   npm run bench:token-mask -- [--target DIR --drafter DIR | --shape qwen3-0.6b] [--context 256] [--reps 5] [--rounds 3]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Engine } from '../lib/engine';
import { timeVerify } from '../lib/internal/probe';
import { makeRandomShape } from '../test/helpers/random-shape';
import { arg, machine, publish, run } from './common';

type Mask = 'none' | 'allow-all' | 'constrained';
const MASKS: Mask[] = ['none', 'allow-all', 'constrained'];

async function main(): Promise<void> {
  const shape = arg('shape', '');
  let target = arg('target', 'models/code-pair/target'), drafter = arg('drafter', 'models/code-pair/drafter');
  let describe = `target ${target}; drafter ${drafter}`;
  if (shape) {
    // Random weights at a published shape, written once and kept (tools/shapes/make_random.py).
    const dir = arg('dir', path.join(os.tmpdir(), `dflash-shape-${shape}-drafted`));
    target = path.join(dir, 'target');
    drafter = path.join(dir, 'drafter');
    if (!fs.existsSync(path.join(drafter, 'model.safetensors'))) makeRandomShape(shape, target, { drafter });
    describe = `RANDOM bf16 weights at the ${shape} shape with its DFlash drafter (tools/shapes/make_random.py, kept in ${dir})`;
  }
  const context = Number(arg('context', '256')), reps = Number(arg('reps', '5')), rounds = Number(arg('rounds', '3'));
  const e = await Engine.load({ target, drafter, maxSequences: 4, maxSeqLen: context + 64, warmup: false, cacheDir: false });
  const block = e.config.drafter?.blockSize ?? 1;
  const cases: Array<[number, number]> = [[1, 1], [1, block], [4, block]];
  const best = new Map<string, number>();
  for (const [rows, k] of cases) for (const m of MASKS) await timeVerify(e, k, context, 1, rows, m);  // compile and warm
  for (let round = 0; round < rounds; round++)
    for (const [rows, k] of cases)
      for (const m of MASKS) {
        const s = await timeVerify(e, k, context, reps, rows, m);
        const key = `${rows}/${k}/${m}`;
        best.set(key, Math.min(best.get(key) ?? Infinity, s));
      }
  const ms = (rows: number, k: number, m: Mask) => best.get(`${rows}/${k}/${m}`)! * 1000;
  const table = cases.map(([rows, k]) => {
    const none = ms(rows, k, 'none'), all = ms(rows, k, 'allow-all'), con = ms(rows, k, 'constrained');
    return `| ${rows} | ${k} | ${none.toFixed(2)} | ${all.toFixed(2)} | ${(all / none).toFixed(3)}x | ${con.toFixed(2)} | ${(con / none).toFixed(3)}x |`;
  });
  const worst = Math.max(...cases.map(([rows, k]) => ms(rows, k, 'allow-all') / ms(rows, k, 'none')));
  const lines = [
    `# The token mask in every verify: its cost to free batches (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(e.client),
    `- ${describe}; vocabulary ${e.config.target.vocabSize} (a mask is rows x K x ${Math.ceil(e.config.target.vocabSize / 32)} words); ${e.stats().dtype}`,
    `- timeVerify at context ${context}: ms per verify, the best of ${rounds} rounds of the median of ${reps}; the three forms interleaved in every round`,
    '',
    '| rows | K | no mask input (ms) | all-ones mask (ms) | ratio | constrained mask (ms) | ratio |',
    '|---|---|---|---|---|---|---|',
    ...table,
    '',
    `Worst free-batch cost of the shared program: ${((worst - 1) * 100).toFixed(1)}% (the issue's bound: 3%).`,
  ];
  publish(lines, `token-mask${shape ? `-random-${shape}` : ''}-${e.client.platformName}.md`);
  await e.close();
}

run(main);
