// Structured output (generate({ grammar })): the grammar engine (llguidance) constrains every
// committed token on the trained code pair. Greedy speculative output equals plain constrained
// output token for token, for every grammar kind and mixed into a batch
// with unconstrained streams, which it does not change; the constrained sampler keeps the
// constrained target distribution (masked, then temperature / top-k) — computed here from the
// engine's own logits, the mask from the tokenizer; bad grammars are RangeErrors naming the
// problem and a grammar that admits nothing ends the stream with an error, not a hang.
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import type { Grammar } from '../lib/grammar';
import { targetDistribution, totalVariation, TwoTokenDraws } from './helpers/distributions';

const PAIR = path.join(__dirname, '..', 'models', 'code-pair');
let engine: Engine;

beforeAll(async () => {
  // A fixed block (adaptive off): every step after the first is speculative, whatever this
  // machine's costs would make the adaptive policy choose.
  engine = await Engine.load({ target: path.join(PAIR, 'target'), drafter: path.join(PAIR, 'drafter'), maxSeqLen: 256, maxSequences: 4, adaptive: false, cacheDir: false });
});
afterAll(() => engine?.dispose());

const PERSON = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 120 }, tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 3 } },
  required: ['name', 'age', 'tags'],
  additionalProperties: false,
};
const GRAMMARS: Array<[string, Grammar, string, (text: string) => void]> = [
  ['json schema', { jsonSchema: PERSON }, 'def add(a, b):\n    return a', (t) => {
    const v = JSON.parse(t);
    expect(Object.keys(v)).toEqual(['name', 'age', 'tags']);
    expect(typeof v.name).toBe('string');
    expect(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120).toBe(true);
    expect(v.tags.every((x: string) => x === 'a' || x === 'b')).toBe(true);
  }],
  ['json object', { json: true }, 'config = ', (t) => expect(typeof JSON.parse(t)).toBe('object')],
  ['regex', { regex: 'def [a-z_]+\\([a-z, ]*\\):' }, 'def add(a, b):\n    return a', (t) => expect(t).toMatch(/^def [a-z_]+\([a-z, ]*\):$/)],
  ['lark', { lark: 'start: "return " NAME | "return " NAME " + " NAME\nNAME: /[a-z]{1,8}/' }, 'x = 1\n', (t) => expect(t).toMatch(/^return [a-z]{1,8}( \+ [a-z]{1,8})?$/)],
];

describe('structured output', () => {
  for (const [name, grammar, prompt, check] of GRAMMARS) {
    it(`${name}: matches and ends when complete; greedy speculative = plain, sampled follows the grammar`, async () => {
      const run = (temperature: number, speculative?: false) =>
        engine.generate(prompt, { maxTokens: temperature ? 40 : 100, grammar, temperature, seed: 11, speculative }).done();
      const plain = await run(0, false);
      expect(plain.reason, `${name}: ${JSON.stringify(plain.text)}`).toBe('eos');
      check(plain.text);
      const spec = await run(0);
      expect(spec.ids).toEqual(plain.ids);
      expect(spec.reason).toBe('eos');
      // Sampled: speculation keeps the distribution, not the draws (a drafted token is accepted
      // with its own uniform): each run's output matches the grammar.
      for (const speculative of [false, undefined] as const) {
        const d = await run(0.9, speculative);
        if (d.reason === 'eos') check(d.text);
        else expect(d.reason).toBe('maxTokens');
      }
    });
  }

  it('the grammar rows of a batch leave the other rows unchanged, and speculation still proposes drafts', async () => {
    const free = (p: string) => engine.generate(p, { maxTokens: 40 }).done();
    const alone = await free('def fibonacci(n):');
    const before = engine.stats().grammarRows;
    const [a, g, b] = await Promise.all([
      free('def fibonacci(n):'),
      engine.generate('class Stack:', { maxTokens: 60, grammar: { regex: '(.|\\n){0,200}' } }).done(),
      engine.generate('x = ', { maxTokens: 60, grammar: { jsonSchema: PERSON }, temperature: 0.7, seed: 5 }).done(),
    ]);
    expect(a.ids).toEqual(alone.ids);
    // A grammar that admits what the model writes anyway: the same tokens as no grammar.
    expect(g.ids).toEqual((await engine.generate('class Stack:', { maxTokens: 60 }).done()).ids);
    expect(g.stats.acceptanceRate).toBeGreaterThan(0);
    JSON.parse(b.text);
    expect(engine.stats().grammarRows).toBeGreaterThan(before);
  });

  it('sampling under a grammar keeps the constrained target distribution (speculative, drafts cut by the grammar)', async () => {
    // [a-z]+ : the first token is a lowercase word; the second one too, or EOS (the grammar may
    // end). The drafter proposes code (" +", "\n"...) that the grammar refuses, so both the
    // accept path and the residual after a refused draft are exercised.
    const T = 2, K = 4, N = 500;
    const prompt = engine.tokenizer.encode('def add(a, b):\n    return a');
    const V = engine.config.target.vocabSize;
    const eos = engine.tokenizer.eosTokenIds[0];
    const word = new Set<number>();
    for (let id = 0; id < V; id++) if (/^[a-z]+$/.test(engine.tokenizer.decode([id]))) word.add(id);
    const draws = new TwoTokenDraws();
    let refused = 0;
    for (let seed = 1; seed <= N; seed++) {
      const s = engine.generate(prompt, { maxTokens: 2, temperature: T, topK: K, seed, grammar: { regex: '[a-z]+' } });
      s.on('step', (st) => { if (st.proposed > 0 && st.block < 16) refused++; });
      const d = await s.done();
      const [t1, t2 = eos] = d.ids;
      draws.add(t1, t2);
    }
    const p1 = await targetDistribution(engine, prompt, T, K, (i) => word.has(i));
    expect([...draws.first.keys()].every((t) => word.has(t))).toBe(true);
    expect(totalVariation(draws.first, N, p1), 'first token vs the constrained target').toBeLessThan(0.1);
    const checked = await draws.secondTokenDistances(100, (t1) => targetDistribution(engine, [...prompt, t1], T, K, (i) => word.has(i) || i === eos));
    for (const { t1, n, tv } of checked) expect(tv, `second token after ${t1} (${n} draws)`).toBeLessThan(0.1);
    expect(checked.length).toBeGreaterThan(0);
    expect(refused, 'the grammar cut some draft blocks').toBeGreaterThan(0);
  });

  it('rejects bad grammars with the engine\'s reason, and ends a grammar that admits nothing with an error', async () => {
    const rejects = (grammar: unknown) => engine.generate('x', { grammar: grammar as Grammar, maxTokens: 20 }).done();
    await expect(rejects({ jsonSchema: { type: 'objekt' } })).rejects.toMatchObject({ name: 'RangeError', code: 'INVALID_GRAMMAR', message: /objekt/ });
    await expect(rejects({ regex: '(' })).rejects.toMatchObject({ code: 'INVALID_GRAMMAR', message: /unclosed group/ });
    await expect(rejects({ lark: 'start: foo' })).rejects.toMatchObject({ code: 'INVALID_GRAMMAR', message: /unknown name: "foo"/ });
    await expect(rejects({ jsonSchema: { type: 'string', minLength: 5, maxLength: 2 } })).rejects.toMatchObject({ code: 'INVALID_GRAMMAR', message: /minLength/ });
    expect(() => engine.generate('x', { grammar: { regex: 'a', lark: 'b' } as unknown as Grammar })).toThrow(/exactly one of the keys/);
    expect(() => engine.generate('x', { grammar: { json: 1 } as unknown as Grammar })).toThrow(/json must be true/);
    expect(() => engine.generate('x', { grammar: { jsonSchema: '{nope' } })).toThrow(/jsonSchema is not JSON/);
    const t0 = Date.now();
    await expect(rejects({ regex: '[^\\s\\S]' })).rejects.toThrow(/admits no token/);
    expect(Date.now() - t0).toBeLessThan(30_000);
    // The engine goes on serving.
    expect((await engine.generate('x', { maxTokens: 3 }).done()).ids.length).toBe(3);
  });
});
