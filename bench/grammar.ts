// Structured output's cost, side by side in one run on one engine: the host time the grammar
// engine (llguidance) takes per decode step — token masks for every verified slot, the check of
// each row's drafts, the commit — against the step's wall time, for a JSON schema, any JSON object
// and a permissive regex, at 1 and --batch streams; and the throughput of the same requests with
// and without the grammar. The speculative block is fixed (adaptive off: every step verifies a
// full block, the most masks a step computes).
//   npm run bench:grammar -- [--target DIR --drafter DIR] [--batch 4] [--max-tokens 96] [--requests 8]
import { Engine } from '../lib/engine';
import type { Grammar } from '../lib/grammar';
import { arg, machine, models, publish, resultFile, run } from './common';

const PERSON = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 16 }, age: { type: 'integer' }, tags: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 4 } },
  required: ['name', 'age', 'tags'],
};
const WORKLOADS: Array<[string, Grammar]> = [
  ['JSON schema (3 fields)', { jsonSchema: PERSON }],
  ['any JSON object', { json: true }],
  ['regex (.|\\n){0,400}', { regex: '(.|\\n){0,400}' }],
];
const PROMPTS = ['def add(a, b):\n    return a', 'class Stack:\n', 'import os\n\n', 'x = {"a": 1}\ny = ', 'def main():\n', 'config = ', 'for i in range(10):\n', 'return '];

interface Sample { seconds: number; steps: number; tokens: number; grammarSeconds: number; grammarRows: number }

async function measure(e: Engine, batch: number, requests: number, maxTokens: number, grammar?: Grammar): Promise<Sample> {
  const before = e.stats();
  const t0 = performance.now();
  let tokens = 0;
  for (let i = 0; i < requests; i += batch) {
    const group = Array.from({ length: Math.min(batch, requests - i) }, (_, j) => PROMPTS[(i + j) % PROMPTS.length]);
    const done = await Promise.all(group.map((p) => e.generate(p, { maxTokens, grammar }).done()));
    tokens += done.reduce((a, d) => a + d.ids.length, 0);
  }
  const after = e.stats();
  return {
    seconds: (performance.now() - t0) / 1000, steps: after.decodeIterations - before.decodeIterations, tokens,
    grammarSeconds: after.grammarSeconds - before.grammarSeconds, grammarRows: after.grammarRows - before.grammarRows,
  };
}

async function main(): Promise<void> {
  const m = models();
  const batch = Number(arg('batch', '4'));
  const requests = Number(arg('requests', '8'));
  const maxTokens = Number(arg('max-tokens', '96'));
  const e = await Engine.load({ target: m.target, drafter: m.drafter, maxSequences: batch, adaptive: false });
  const block = e.config.drafter?.blockSize ?? 1;
  // Warm-up: every program shape these runs use, constrained and not.
  for (const b of [1, batch]) {
    await measure(e, b, b, maxTokens);
    for (const [, g] of WORKLOADS) await measure(e, b, b, maxTokens, g);
  }
  const rows: string[] = [];
  const shares: number[] = [];
  for (const b of [1, batch]) {
    for (const [name, g] of WORKLOADS) {
      const free = await measure(e, b, requests, maxTokens);
      const constrained = await measure(e, b, requests, maxTokens, g);
      const stepMs = (constrained.seconds / constrained.steps) * 1000;
      const maskMs = (constrained.grammarSeconds / constrained.steps) * 1000;
      shares.push(maskMs / stepMs);
      rows.push(`| ${b} | ${name} | ${stepMs.toFixed(2)} | ${maskMs.toFixed(3)} | ${((constrained.grammarSeconds / constrained.grammarRows) * 1e6).toFixed(0)} | ` +
        `${((100 * maskMs) / stepMs).toFixed(1)}% | ${(constrained.tokens / constrained.steps / b).toFixed(2)} | ` +
        `${(constrained.tokens / constrained.seconds).toFixed(0)} | ${(free.tokens / free.seconds).toFixed(0)} |`);
    }
  }
  const lines = [
    `# Structured output: the grammar engine's host cost per step (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(e.client),
    `- ${m.describe}`,
    `- vocabulary ${e.config.target.vocabSize}; speculative block ${block} fixed (adaptive off); greedy; ${requests} requests of up to ${maxTokens} tokens per row, in batches; warmed up first`,
    '- wall ms per step: the run\'s wall time (prefills included) / its decode steps; grammar ms/step: llguidance masks (one per verified slot), the draft check and the commit, summed over the rows of a step (the draft pool\'s extra transfer is not in it: it is device time)',
    '- constrained and unconstrained runs of the same prompts, one after the other on one engine; the two throughputs differ also because the outputs differ (a grammar changes what is generated and how much the drafter gets right)',
    '',
    '| streams | grammar | wall ms per step | grammar ms/step | µs per row-step | grammar share of wall time | tokens per row-step | tok/s constrained | tok/s free |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Largest share of a step: ${(100 * Math.max(...shares)).toFixed(1)}% (the issue's bound: 10%).`,
  ];
  publish(lines, resultFile('grammar', m, e.client));
  await e.close();
}

run(main);
