// The "K-flat" curve and the drafter's cost: median time of one verify execution scoring K
// tokens (K = 1 .. 1024, hidden features + accept, as a speculative step runs it) after a fixed
// context, and of one drafter execution per block size, measured in one run on one engine.
//   npx vite-node bench/kernels.ts -- --target DIR --drafter DIR [--context 256] [--reps 5]
import * as os from 'os';

import { Engine } from '../lib/engine';
import { arg, publish, run } from './common';


async function main(): Promise<void> {
  const target = arg('target', 'models/code-pair/target');
  const drafter = arg('drafter', 'models/code-pair/drafter');
  const context = Number(arg('context', '256'));
  const reps = Number(arg('reps', '5'));
  const ks = arg('ks', '1,16,64,128,256,1024').split(',').map(Number);
  const blocks = arg('blocks', '8,16,32,64').split(',').map(Number);
  const engine = await Engine.load({ target, drafter, maxSeqLen: context + Math.max(...ks) + 64, maxSequences: 1 });
  const ne = engine.nativeEngine;
  const verify: number[] = [];
  for (const k of ks) verify.push(await ne.timeVerify(k, context, reps));
  const draft: number[] = [];
  for (const b of blocks) draft.push(await ne.timeDraft(b, context, reps));

  const c = engine.client;
  const t = engine.config.target;
  const lines = [
    `# Verify and draft cost (${new Date().toISOString().slice(0, 10)})`,
    '',
    `- machine: ${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length} cores; PJRT platform ${c.platformName} (${c.platformVersion})`,
    `- target: ${target} (${t.numLayers} layers, hidden ${t.hiddenSize}, vocab ${t.vocabSize}); drafter: ${drafter}`,
    `- context ${context} tokens; median of ${reps} executions after a warm-up (compile excluded); f32 on the CPU plugin`,
    '',
    '| K (tokens verified) | ms / verify | vs K=1 | vs K=16 | ms per token |',
    '|---|---|---|---|---|',
    ...ks.map((k, i) => `| ${k} | ${(verify[i] * 1e3).toFixed(2)} | ${(verify[i] / verify[0]).toFixed(2)}x | ${ks.includes(16) ? (verify[i] / verify[ks.indexOf(16)]).toFixed(2) + 'x' : '-'} | ${((verify[i] / k) * 1e3).toFixed(3)} |`),
    '',
    '| block | ms / draft | draft / verify(K=block) |',
    '|---|---|---|',
    ...blocks.map((b, i) => {
      const vi = ks.indexOf(b);
      return `| ${b} | ${(draft[i] * 1e3).toFixed(2)} | ${vi >= 0 ? (draft[i] / verify[vi]).toFixed(2) : '-'} |`;
    }),
    '',
    'On a compute-bound CPU the verify time grows with K; the seed reports it flat to K=1024 on TPU v5p and within 1.04x on H100 (memory-bound at small K).',
  ];
  publish(lines, `kernels-${c.platformName}.md`);
  engine.dispose();
}

run(main);
