// Speculative vs plain greedy decoding on held-out prompts, side by side in one run: every prompt
// is generated plainly, speculatively at each fixed block size (an engine with adaptive: false),
// and with adaptive speculation (the default engine: each step picks the block, 1 = plain, from
// measured verify/draft costs and per-position acceptance). Modes run interleaved per prompt in a
// rotating order; outputs must be identical to plain greedy. Reports τ, acceptance, tokens/s and
// the ratio to plain per mode, the blocks the adaptive engine chose, per-position acceptance, and
// charts (per-position acceptance; tokens/s per prompt).
// With --random (no trained pair needed) it makes a random-weight pair (--preset tiny|small).
//   npm run bench:speculative -- [--target DIR --drafter DIR] [--prompts FILE.jsonl]
//        [--blocks 4,8,16] [--max-tokens 128] [--limit 32] [--chat] [--out bench/results/NAME.md]
// --chat sends each prompt as a user message through the tokenizer's chat template (instruct
// models, e.g. the SmolLM2 pair on bench/prompts/chat-heldout-{chat,code,math}.jsonl).
//   npm run bench:speculative -- --random [--preset tiny] [--all-accepted] ...
import * as fs from 'fs';
import * as path from 'path';

import { Engine } from '../lib/engine';
import type { GenerateOptions } from '../lib/request';
import type { ChatMessage } from '../lib/tokenizer';
import { lineSpec, publishChart } from './chart';
import { arg, flag, machine, Models, models, publish, resultFile, run } from './common';

interface Mode {
  name: string;
  engine: Engine;
  options: GenerateOptions;
  block?: number;  // fixed block size
}

class Tally {
  tokens = 0; seconds = 0; steps = 0; stepTokens = 0; proposed = 0; accepted = 0; identical = 0;
  perPos: number[] = [];
  perPosOffered: number[] = [];
  chosen = new Map<number, number>();  // block -> steps
  perPrompt: number[] = [];            // tokens/s of each prompt
}

async function main(): Promise<void> {
  const m = models();
  const promptFile = arg('prompts', 'bench/prompts/heldout-code.jsonl');
  const blocks = arg('blocks', '4,8,16').split(',').map(Number);
  const maxTokens = Number(arg('max-tokens', '128'));
  const limit = Number(arg('limit', '32'));
  const prompts = fs.readFileSync(promptFile, 'utf8').trim().split('\n').slice(0, limit).map((l) => JSON.parse(l).prompt as string);

  const load = { target: m.target, drafter: m.drafter, maxSeqLen: 1024, maxSequences: 1 };
  const adaptiveEngine = await Engine.load({ ...load, adaptive: true });
  const fixedEngine = await Engine.load({ ...load, adaptive: false });
  const modes: Mode[] = [
    { name: 'plain', engine: adaptiveEngine, options: { speculative: false } },
    ...blocks.map((b) => ({ name: `fixed block ${b}`, engine: fixedEngine, options: { speculative: { blockSize: b } }, block: b })),
    { name: `adaptive (≤ ${Math.max(...blocks)})`, engine: adaptiveEngine, options: { speculative: { blockSize: Math.max(...blocks) } } },
  ];
  // The whole measurement runs twice; the first pass compiles (or loads from the disk cache)
  // every shape bucket it touches, lets the adaptive engine measure its costs, and is discarded.
  const chat = flag('chat');
  const inputs = prompts.map((p) => (chat ? [{ role: 'user' as const, content: p }] : p));
  let tallies: Tally[] = [];
  for (let pass = 0; pass < 2; pass++) tallies = await measure(modes, inputs, maxTokens);
  await report(modes, tallies, m, { promptFile, prompts: prompts.length, maxTokens, client: adaptiveEngine.client, chat });
  adaptiveEngine.dispose();
  fixedEngine.dispose();
}

async function measure(modes: Mode[], prompts: Array<string | ChatMessage[]>, maxTokens: number): Promise<Tally[]> {
  const tallies = modes.map(() => new Tally());
  for (let p = 0; p < prompts.length; p++) {
    let plainIds = '';
    // Plain first (the reference), then the speculative modes in an order rotating per prompt.
    const spec = modes.map((_, i) => i).slice(1);
    const order = [0, ...spec.slice(p % spec.length), ...spec.slice(0, p % spec.length)];
    for (const i of order) {
      const mode = modes[i], t = tallies[i];
      const t0 = performance.now();
      const s = mode.engine.generate(prompts[p], { maxTokens, ...mode.options });
      s.on('step', (e) => {
        t.steps += 1;
        t.stepTokens += e.acceptedIds.length;
        t.proposed += e.proposed;
        t.accepted += e.accepted;
        t.chosen.set(e.block, (t.chosen.get(e.block) ?? 0) + 1);
        e.positionAcceptance.forEach((a, j) => {
          t.perPos[j] = (t.perPos[j] ?? 0) + (a ? 1 : 0);
          t.perPosOffered[j] = (t.perPosOffered[j] ?? 0) + 1;
        });
      });
      const done = await s.done();
      const sec = (performance.now() - t0) / 1000;
      t.tokens += done.ids.length;
      t.seconds += sec;
      t.perPrompt.push(done.ids.length / sec);
      const ids = JSON.stringify(done.ids);
      if (i === 0) plainIds = ids;
      if (ids === plainIds) t.identical += 1;
    }
  }
  return tallies;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

async function report(modes: Mode[], tallies: Tally[], m: Models,
  o: { promptFile: string; prompts: number; maxTokens: number; client: Engine['client']; chat: boolean }): Promise<void> {
  const plain = tallies[0];
  const plainTps = plain.tokens / plain.seconds;
  const lines = [
    `# Speculative vs plain greedy decoding (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(o.client),
    `- ${m.describe}`,
    `- ${o.prompts} prompts from ${o.promptFile}${o.chat ? ' as user messages (the chat template)' : ''}; up to ${o.maxTokens} new tokens each; greedy; one sequence at a time`,
    '- modes run interleaved per prompt (plain first, the others in rotating order), two engines on the same weights: ' +
      '`adaptive: true` (plain and adaptive rows) and `adaptive: false` (fixed blocks); the whole run is done twice and the first pass ' +
      '(compiles, the adaptive engine\'s first cost measurements) discarded',
    '- tok/s = tokens / wall seconds over whole generations incl. prefill; vs plain = that ratio; per-prompt median = median over prompts of the per-prompt ratio',
    '',
    '| mode | τ (tokens / target forward) | draft acceptance | tok/s | vs plain | per-prompt median vs plain | output identical to plain |',
    '|---|---|---|---|---|---|---|',
    ...modes.map((mode, i) => {
      const t = tallies[i];
      const tps = t.tokens / t.seconds;
      const ratios = t.perPrompt.map((x, j) => x / plain.perPrompt[j]);
      const same = t.identical === o.prompts ? `yes (${t.identical}/${o.prompts})` : `NO (${t.identical}/${o.prompts})`;
      return `| ${mode.name} | ${(t.stepTokens / t.steps).toFixed(2)} | ${t.proposed ? ((t.accepted / t.proposed) * 100).toFixed(1) + '%' : '-'} | ` +
        `${tps.toFixed(1)} | ${(tps / plainTps).toFixed(2)}x | ${median(ratios).toFixed(2)}x | ${same} |`;
    }),
  ];
  const adaptive = tallies[tallies.length - 1];
  const chosen = [...adaptive.chosen.entries()].sort((a, b) => a[0] - b[0]);
  lines.push('', `Blocks the adaptive engine chose (share of its ${adaptive.steps} steps; 1 = a plain step, no drafter run):`, '',
    `| block | ${chosen.map(([b]) => b).join(' | ')} |`, `|---|${chosen.map(() => '---').join('|')}|`,
    `| steps | ${chosen.map(([, n]) => ((n / adaptive.steps) * 100).toFixed(1) + '%').join(' | ')} |`);
  const fixed = modes.map((mode, i) => ({ mode, t: tallies[i] })).filter((x) => x.mode.block);
  const maxPos = Math.max(...fixed.map((x) => x.mode.block! - 1));
  lines.push('', 'Per-position acceptance at fixed blocks (of the steps that offered draft position i, the fraction that accepted it):', '',
    `| block | ${Array.from({ length: maxPos }, (_, i) => `p${i + 1}`).join(' | ')} |`,
    `|---|${Array.from({ length: maxPos }, () => '---').join('|')}|`,
    ...fixed.map(({ mode, t }) => `| ${mode.block} | ${Array.from({ length: maxPos }, (_, i) =>
      (t.perPosOffered[i] ? (t.perPos[i] / t.perPosOffered[i]).toFixed(2) : '')).join(' | ')} |`));
  const ratio = adaptive.tokens / adaptive.seconds / plainTps;
  lines.push('', `Issue #14 goal, speculation never slower than plain (adaptive ÷ plain ≥ 1.0x): ${ratio >= 1 ? 'met' : 'not met'} (${ratio.toFixed(2)}x).`,
    'For context, the seed system (Qwen3-4B + z-lab/Qwen3-4B-DFlash-b16 on TPU v5p, greedy) reports τ 5.42 on average over 9 sets and 8.80 on math500.');
  const file = resultFile('speculative', m, o.client);
  publish(lines, file);

  const subtitle = m.random ? `random weights (--random --preset ${m.random})` : `trained pair ${path.dirname(m.target)}`;
  await publishChart(lineSpec({
    title: 'Per-position acceptance: how often draft position i is accepted',
    subtitle, xTitle: 'draft position in the block', yTitle: 'fraction of offers accepted', xInteger: true,
    series: fixed.map(({ mode, t }) => ({ name: `block ${mode.block}`,
      points: t.perPosOffered.map((n, i) => [i + 1, t.perPos[i] / n] as [number, number]) })),
  }), file, 'acceptance');
  await publishChart(lineSpec({
    title: 'Speculative vs plain greedy decoding, per prompt',
    subtitle, xTitle: 'prompt', yTitle: 'tokens / s (whole generation)', xInteger: true,
    series: modes.map((mode, i) => ({ name: mode.name, dashed: i === 0,
      points: tallies[i].perPrompt.map((x, j) => [j + 1, x] as [number, number]) })),
  }), file, 'per-prompt');

  const lossless = tallies.every((t) => t.identical === o.prompts);
  console.log(`\nlossless: ${lossless ? 'every mode\'s output ids equal plain output ids for every prompt' : 'MISMATCH: a speculative output differs from plain greedy'}`);
  if (!lossless) process.exitCode = 1;
}

run(main);
