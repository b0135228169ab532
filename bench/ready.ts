// Ready means fast: the first batch of C concurrent requests on a freshly loaded engine, with
// engine.precompile() before it (what `dflash serve` does before it reports ready) and without
// (programs compiled on first use, in the background where the scheduler can wait), each from an
// empty disk cache, against the steady state of the same engine (the same batch once everything
// is compiled). Side by side in one run; the prefix cache is off so repeated prompts cost the same.
//   npm run bench:ready -- [--target DIR --drafter DIR | --random [--preset P]] [--concurrency 16]
//        [--max-tokens 64] [--context 256] [--prompts FILE.jsonl]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Engine } from '../lib/engine';
import { arg, machine, models, publish, resultFile, run } from './common';

interface Batch { seconds: number; tokens: number }

async function batch(engine: Engine, prompts: string[], maxTokens: number): Promise<Batch> {
  const t0 = performance.now();
  const done = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens, temperature: 0 }).done()));
  return { seconds: (performance.now() - t0) / 1000, tokens: done.reduce((a, d) => a + d.ids.length, 0) };
}

async function main(): Promise<void> {
  const m = models();
  const concurrency = Number(arg('concurrency', '16'));
  const maxTokens = Number(arg('max-tokens', '64'));
  const context = Number(arg('context', '256'));
  const promptFile = arg('prompts', 'bench/prompts/heldout-code.jsonl');
  const all = fs.readFileSync(promptFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l).prompt as string);
  const prompts = Array.from({ length: concurrency }, (_, i) => all[i % all.length]);
  const rows: string[] = [];
  let engineForMachine: Engine | undefined;
  for (const mode of ['precompiled', 'lazy'] as const) {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-ready-'));
    try {
      const t0 = performance.now();
      const engine = await Engine.load({ target: m.target, drafter: m.drafter, maxSequences: concurrency, maxSeqLen: Math.max(1024, context), cacheDir, prefixCaching: false });
      let programs = 0;
      if (mode === 'precompiled') programs = (await engine.precompile({ context })).programs;
      const ready = (performance.now() - t0) / 1000;
      const first = await batch(engine, prompts, maxTokens);
      const second = await batch(engine, prompts, maxTokens);
      // Steady state: everything the batch needs is compiled by now (background compiles included).
      await new Promise((r) => setTimeout(r, 2000));
      const steady = await batch(engine, prompts, maxTokens);
      const tps = (b: Batch) => b.tokens / b.seconds;
      rows.push(`| ${mode} | ${ready.toFixed(1)} | ${programs || '-'} | ${engine.stats().compiles} | ${tps(first).toFixed(0)} | ${tps(second).toFixed(0)} | ` +
        `${tps(steady).toFixed(0)} | ${(tps(steady) / tps(first)).toFixed(2)}x |`);
      process.stderr.write(`${mode}: done\n`);
      if (!engineForMachine) engineForMachine = engine;
      else await engine.close();
    } finally {
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  }
  const c = engineForMachine!.client;
  publish([
    `# Ready means fast: first batch vs steady state (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(c),
    `- ${m.describe}`,
    `- ${concurrency} concurrent greedy requests (${promptFile}), ${maxTokens} new tokens each; engine maxSequences ${concurrency}; each mode from an empty disk cache; ` +
      `precompiled: engine.precompile({ context: ${context} }) before the first batch (what \`dflash serve\` runs before /health is ok)`,
    '',
    '| start | seconds to ready | programs precompiled | programs compiled in all | first batch tok/s | second batch tok/s | steady tok/s | steady / first |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    'Issue #18 asks the first batch after a precompiled start within 1.3x of steady state (steady / first <= 1.3).',
  ], resultFile('ready', m, c));
  await engineForMachine!.close();
}

run(main);
