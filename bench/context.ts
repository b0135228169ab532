// How plain decoding's time per token grows with the context (issue 14: TPOT at context 2048
// within 1.5x of TPOT at context 64), against the memory floor: one verify K=1 execution (the
// plain decode step, + its host transfer) after each context, the pages bucket it ran in, and
// (weights + the live KV bytes at that context) / (weights + KV at the first context) — what a
// memory-bound step could not beat. Also verify(K)/verify(1) at the first context.
//   npm run bench:context -- [--target DIR | --shape mini|qwen3-0.6b] [--dtype f32|bf16]
//        [--contexts 64,128,256,512,1024,2048] [--ks 16] [--reps 9] [--rounds 3] [--json]
// --shape makes a random-weight checkpoint of that shape once (tools/shapes/make_random.py, kept in
// /tmp/dflash-shape-<shape>-<dtype>); its max_position_embeddings covers the contexts.
// --rounds repeats the whole sweep and reports per-context medians (a shared machine).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Engine } from '../lib/engine';
import { timeVerify } from '../lib/internal/probe';
import { makeRandomShape } from '../test/helpers/random-shape';
import { arg, flag, machine, publish, run } from './common';

const median = (v: number[]) => { const s = [...v].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

function checkpoint(): { dir: string; label: string; file: string } {
  const shape = arg('shape', '');
  if (!shape) {
    const dir = arg('target', 'models/code-pair/target');
    return { dir, label: `target ${dir}`, file: `context-${path.basename(path.dirname(dir))}` };
  }
  const dtype = arg('dtype', 'f32') as 'f32' | 'bf16';
  const dir = path.join(os.tmpdir(), `dflash-shape-${shape}-${dtype}`);
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) makeRandomShape(shape, dir, { dtype });
  return { dir, label: `RANDOM ${dtype} weights at the ${shape} shape (tools/shapes/make_random.py, ${dir})`, file: `context-random-${shape}-${dtype}` };
}

async function main(): Promise<void> {
  const ck = checkpoint();
  const contexts = arg('contexts', '64,128,256,512,1024,2048').split(',').map(Number);
  const ks = arg('ks', '16').split(',').filter(Boolean).map(Number);
  const reps = Number(arg('reps', '9')), rounds = Number(arg('rounds', '3'));
  const maxK = Math.max(1, ...ks);
  const maxSeqLen = Math.max(...contexts) + maxK + 16;
  const dtype = arg('dtype', '');
  const load = os.loadavg();
  const engine = await Engine.load({ target: ck.dir, maxSeqLen, maxSequences: 1, cacheDir: false, ...(dtype ? { dtype: dtype as 'f32' | 'bf16' } : {}) });
  const t = engine.config.target;
  const st0 = engine.stats();
  const kvBytes = st0.kvDtype === 'f32' ? 4 : 2;
  const kvPerToken = 2 * t.numLayers * t.numKvHeads * t.headDim * kvBytes;  // K and V, every layer
  const weights = st0.weightBytes;

  const decode = new Map<number, number[]>(contexts.map((c) => [c, []]));
  const verifyK = new Map<number, number[]>(ks.map((k) => [k, []]));
  for (let round = 0; round < rounds; round++) {
    for (const c of contexts) decode.get(c)!.push(await timeVerify(engine, 1, c, reps));
    for (const k of ks) verifyK.get(k)!.push(await timeVerify(engine, k, contexts[0], reps));
  }
  const loadAfter = os.loadavg();
  const ms = (s: number) => (s * 1e3).toFixed(2);
  const d0 = median(decode.get(contexts[0])!);
  const floor = (c: number) => (weights + c * kvPerToken) / (weights + contexts[0] * kvPerToken);
  const lines = [
    `# Plain decode time vs context (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(engine.client),
    `- ${ck.label}`,
    `- target: ${t.numLayers} layers, hidden ${t.hiddenSize}, ${t.numKvHeads} kv heads x ${t.headDim}, vocab ${t.vocabSize}; ` +
      `dtype ${st0.dtype}, KV ${st0.kvDtype}; weights ${(weights / 1e6).toFixed(1)} MB, KV ${(kvPerToken / 1024).toFixed(1)} KiB per token; 1 sequence, default page size`,
    `- one verify K=1 execution (plain decode step + its host transfer) after the context; median of ${reps} executions per round, ` +
      `median over ${rounds} rounds; load average (1 min) ${load[0].toFixed(2)} before, ${loadAfter[0].toFixed(2)} after, on ${os.cpus().length} cores`,
    '',
    '| context | ms / token | vs first | memory floor ratio (weights + live KV) | rounds min – max |',
    '|---|---|---|---|---|',
    ...contexts.map((c) => {
      const v = decode.get(c)!;
      return `| ${c} | ${ms(median(v))} | ${(median(v) / d0).toFixed(2)}x | ${floor(c).toFixed(2)}x | ${ms(Math.min(...v))} – ${ms(Math.max(...v))} |`;
    }),
    '',
    ...ks.map((k) => `verify(${k}) / verify(1) at context ${contexts[0]}: ${ms(median(verifyK.get(k)!))} / ${ms(d0)} ms = ${(median(verifyK.get(k)!) / d0).toFixed(2)}`),
  ];
  publish(lines, `${ck.file}-${engine.client.platformName}.md`);
  if (flag('json'))
    console.log(JSON.stringify({ decode: Object.fromEntries([...decode].map(([c, v]) => [c, median(v)])), verify: Object.fromEntries([...verifyK].map(([k, v]) => [k, median(v)])) }));
  engine.dispose();
}

run(main);
