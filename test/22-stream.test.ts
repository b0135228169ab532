// The generate() stream as a Node service uses it: typed events, async iteration, stop
// reasons (eos, stop string, maxTokens, abort), cancellation by AbortSignal or by leaving a
// `for await` loop (pages freed), several streams at once without mixing tokens, UTF-8-safe
// text chunks, chat messages, and clear errors for bad options.
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import type { StepEvent, TokenEvent } from '../lib/stream';
import { makeDrafter, makeTarget, tmpDir } from './helpers/tiny-model';

const MODELS = path.join(__dirname, 'fixtures', 'models');
let engine: Engine;

beforeAll(async () => {
  engine = await Engine.load({ target: path.join(MODELS, 'qwen3-f32'), drafter: path.join(MODELS, 'qwen3-f32-dflash'), maxSeqLen: 160, maxSequences: 3 });
});
afterAll(() => engine?.dispose());

const PROMPT = [3, 14, 15, 92, 65, 35];

describe('events and iteration', () => {
  it('emits token, step and done events consistent with each other', async () => {
    const stream = engine.generate(PROMPT, { maxTokens: 25 });
    const tokens: TokenEvent[] = [];
    const steps: StepEvent[] = [];
    stream.on('token', (t) => tokens.push(t));
    stream.on('step', (s) => steps.push(s));
    const done = await stream.done();
    expect(done.reason).toBe('maxTokens');
    expect(done.ids.length).toBe(25);
    expect(tokens.filter((t) => t.id >= 0).map((t) => t.id)).toEqual(done.ids);
    expect(tokens.map((t) => t.text).join('')).toBe(done.text);
    expect(steps.length).toBe(done.stats.steps);
    // The first step is plain (it scores the prompt's last token); the others verify a block.
    expect(steps[0]).toMatchObject({ block: 1, proposed: 0, accepted: 0 });
    for (const s of steps) {
      expect(s.proposed).toBe(s.block - 1);
      expect(s.block).toBeLessThanOrEqual(8);
      expect(s.acceptedIds.length).toBe(s.accepted + 1);
      expect(s.positionAcceptance.filter(Boolean).length).toBe(s.accepted);
    }
    expect(tokens.filter((t) => t.drafted).length).toBe(steps.reduce((a, s) => a + s.accepted, 0));
    expect(done.stats.ttft).toBeGreaterThan(0);
    expect(done.stats.tokensPerSecond).toBeGreaterThan(0);
  });

  it('is async-iterable and yields the same tokens', async () => {
    const ref = await engine.generate(PROMPT, { maxTokens: 12 }).done();
    const got: number[] = [];
    for await (const t of engine.generate(PROMPT, { maxTokens: 12 })) got.push(t.id);
    expect(got).toEqual(ref.ids);
  });
});

describe('stopping', () => {
  it('stops at a stop string and never streams it', async () => {
    const full = await engine.generate(PROMPT, { maxTokens: 30, speculative: false }).done();
    // Pick a stop string from the middle of the generated text.
    const mid = Math.floor(full.text.length / 2);
    const stop = full.text.slice(mid, mid + 2);
    const s = engine.generate(PROMPT, { maxTokens: 30, stop: [stop] });
    let streamed = '';
    s.on('token', (t) => (streamed += t.text));
    const done = await s.done();
    expect(done.reason).toBe('stop');
    expect(done.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
    expect(streamed).toBe(done.text);
  });

  it('stops at EOS without emitting it, speculative or not', async () => {
    // Without an EOS, see which token the model produces 12th; then declare that token the
    // model's eos_token_id (same weights) and generate again.
    const prompt = [41, 42, 43];
    const ref = await engine.generate(prompt, { maxTokens: 40, speculative: false }).done();
    const eos = ref.ids[12];
    const first = ref.ids.indexOf(eos);
    const dir = tmpDir();
    const t = makeTarget(path.join(dir, 't'), { vocab: 256, seed: 11, eos });  // = qwen3-f32 weights
    makeDrafter(path.join(dir, 'd'), t, { seed: 12, targetLayerIds: [0, 1] });
    const e = await Engine.load({ target: path.join(dir, 't'), drafter: path.join(dir, 'd'), maxSeqLen: 128, maxSequences: 1 });
    try {
      for (const speculative of [false, undefined] as const) {
        const s = e.generate(prompt, { maxTokens: 40, speculative });
        let streamed = '';
        s.on('token', (tk) => (streamed += tk.text));
        const done = await s.done();
        expect(done.reason).toBe('eos');
        expect(done.ids).toEqual(ref.ids.slice(0, first));
        expect(streamed).toBe(done.text);
      }
    } finally {
      e.dispose();
    }
  });
});

describe('cancellation', () => {
  it('an AbortSignal ends the stream with reason abort and frees its pages', async () => {
    const ac = new AbortController();
    const s = engine.generate(PROMPT, { maxTokens: 100, signal: ac.signal });
    let n = 0;
    s.on('token', () => {
      if (++n === 5) ac.abort();
    });
    const done = await s.done();
    expect(done.reason).toBe('abort');
    expect(done.ids.length).toBeLessThan(100);
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });

  it('an already aborted signal rejects with an AbortError', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(engine.generate(PROMPT, { maxTokens: 10, signal: ac.signal }).done()).rejects.toMatchObject({ name: 'AbortError' });
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });

  it('breaking out of for-await cancels the work', async () => {
    const s = engine.generate(PROMPT, { maxTokens: 100 });
    let n = 0;
    for await (const _ of s) if (++n === 3) break;
    const done = await s.done();
    expect(done.reason).toBe('abort');
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });
});

describe('concurrency', () => {
  it('several streams at once do not mix tokens', async () => {
    const prompts = [[1, 2, 3], [200, 100, 50, 25], [7, 7, 7, 7, 7, 7, 7, 7, 7]];
    const solo = [];
    for (const p of prompts) solo.push((await engine.generate(p, { maxTokens: 20 }).done()).ids);
    const together = await Promise.all(prompts.map((p, i) => engine.generate(p, { maxTokens: 20, speculative: i === 1 ? false : undefined }).done()));
    together.forEach((d, i) => expect(d.ids).toEqual(solo[i]));
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });

  it('more long sequences than the pool holds wait for pages and all complete', async () => {
    // The pool holds maxSequences (3) sequences of maxSeqLen: six long ones queue for admission
    // instead of failing, and each gets exactly what it gets alone.
    const prompts = Array.from({ length: 6 }, (_, i) => Array.from({ length: 140 }, (_, k) => (k * 5 + i) % 256));
    const solo = [];
    for (const p of prompts.slice(0, 2)) solo.push((await engine.generate(p, { maxTokens: 15 }).done()).ids);
    const results = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: 15 }).done()));
    for (const r of results) expect(r.reason).toBe('maxTokens');
    expect(results[0].ids).toEqual(solo[0]);
    expect(results[1].ids).toEqual(solo[1]);
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });
});

describe('text and input', () => {
  it('text chunks never split a UTF-8 character', async () => {
    // Byte-level vocabulary: ids 0xE2 0x82 0xAC are the three bytes of "€".
    const dir = tmpDir();
    makeTarget(path.join(dir, 't'), { vocab: 256, seed: 9 });
    const e = await Engine.load({ target: path.join(dir, 't'), maxSeqLen: 64, maxSequences: 1 });
    try {
      const { IncrementalDetokenizer } = await import('../lib/tokenizer');
      const d = new IncrementalDetokenizer(e.tokenizer);
      const chunks = [[0x61], [0xe2], [0x82], [0xac], [0x62], [0xf0, 0x9f], [0x98], [0x80]].map((ids) => d.push(ids));
      expect(chunks).toEqual(['a', '', '', '€', 'b', '', '', '😀']);
      expect(d.flush()).toBe('');
      for (const c of chunks) expect(c).not.toContain('\ufffd');
    } finally {
      e.dispose();
    }
  });

  it('accepts a string prompt and chat messages', async () => {
    const a = await engine.generate('hello', { maxTokens: 5 }).done();
    expect(a.stats.promptTokens).toBe(5);
    const b = await engine.generate([{ role: 'user', content: 'hi' }], { maxTokens: 5 }).done();
    expect(b.stats.promptTokens).toBe(engine.tokenizer.encode('<|user|>hi\n<|assistant|>').length);
  });

  it('rejects bad options and bad prompts with clear errors', async () => {
    expect(() => engine.generate(PROMPT, { maxTokens: 0 })).toThrow(/maxTokens/);
    expect(() => engine.generate(PROMPT, { temperature: -1 })).toThrow(/temperature/);
    await expect(engine.generate([999], { maxTokens: 3 }).done()).rejects.toThrow(/outside the vocabulary/);
    await expect(engine.generate([], { maxTokens: 3 }).done()).rejects.toThrow(/empty/);
    await expect(engine.generate(PROMPT, { maxTokens: 3, speculative: { blockSize: 64 } }).done()).rejects.toThrow(/blockSize/);
    await expect(engine.generate(PROMPT, { maxTokens: 5000 }).done()).rejects.toThrow(/maxSeqLen/);
    expect(engine.stats().freePages).toBe(engine.stats().totalPages);
  });
});
