// What clients send beyond one plain completion, through the official `openai` client: chat
// `logprobs` / `top_logprobs` and the completions' legacy `logprobs` with `echo` (prompt
// log-probabilities, max_tokens 0 as lm-evaluation-harness' loglikelihood sends it), whole and
// streamed, equal to the engine's own; `n` choices (seed + i each, their own index and
// finish_reason, usage summed), whole and streamed; the prefix cache's cached_tokens; Prometheus'
// prefix-cache counters.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Engine } from '../lib/engine';
import { loadPair, metric, MODEL, Running, scrape, startServer } from './helpers/server';

let engine: Engine;
let srv: Running;
let client: OpenAI;

beforeAll(async () => {
  engine = await loadPair();
  srv = await startServer(engine, { maxSequences: 4 });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await srv?.close();
  engine?.dispose();
});

const MESSAGES = [{ role: 'user' as const, content: 'def add(a, b):' }];
const PROMPT = 'import os\nimport sys\n\n\ndef main():\n';

describe('logprobs', () => {
  it('chat: every token with its top alternatives, as the engine computes them, whole and streamed', async () => {
    const direct = await engine.generate(engine.tokenizer.encodeChat(MESSAGES), { maxTokens: 10, temperature: 0, logprobs: 3 }).done();
    const res = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = res.choices[0].logprobs!.content!;
    expect(content).toHaveLength(direct.ids.length);
    content.forEach((c, i) => {
      expect(c.logprob).toBeCloseTo(direct.logprobs![i].logprob, 5);
      expect(c.token).toBe(engine.tokenizer.decode([direct.ids[i]], { skipSpecialTokens: false }));
      expect(c.bytes).toEqual(Array.from(Buffer.from(c.token, 'utf8')));
      expect(c.top_logprobs.map((t) => t.logprob)).toEqual(direct.logprobs![i].top.map((t) => t.logprob));
      expect(c.top_logprobs[0].token).toBe(c.token);  // greedy: the token is the most likely
    });
    expect(content.map((c) => c.token).join('')).toBe(res.choices[0].message.content);
    const stream = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 3, stream: true });
    const streamed: typeof content = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed).toEqual(content);
    // Without logprobs: null, as OpenAI sends it.
    const plain = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 4, temperature: 0 });
    expect(plain.choices[0].logprobs).toBeNull();
  });

  it('completions: logprobs with echo give the prompt\'s log-probabilities too (max_tokens 0: the prompt alone)', async () => {
    const ids = engine.tokenizer.encode(PROMPT);
    const direct = await engine.generate(ids, { maxTokens: 1, promptLogprobs: 2 }).done();
    const res = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 2, temperature: 0 });
    const lp = res.choices[0].logprobs!;
    expect(res.choices[0].text).toBe(engine.tokenizer.decode(ids, { skipSpecialTokens: false }));
    expect(lp.tokens).toHaveLength(ids.length);
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.top_logprobs![0]).toBeNull();
    for (let i = 1; i < ids.length; i++) {
      expect(lp.token_logprobs![i]).toBeCloseTo(direct.promptLogprobs![i]!.logprob, 5);
      expect(Object.keys(lp.top_logprobs![i]!).length).toBeLessThanOrEqual(2);
    }
    expect(lp.text_offset![1]).toBe(lp.tokens![0].length);
    expect(res.usage?.completion_tokens).toBe(0);
    // With tokens generated: the prompt's entries, then the completion's.
    const more = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 5, echo: true, logprobs: 1, temperature: 0 });
    expect(more.choices[0].logprobs!.tokens).toHaveLength(ids.length + 5);
    expect(more.choices[0].text.startsWith(res.choices[0].text)).toBe(true);
  });
});

describe('n choices', () => {
  it('n = 3: seed + i each, their own index and finish_reason; the prompt computed once', async () => {
    const ids = engine.tokenizer.encode(PROMPT);
    const res = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0.9, seed: 40, n: 3 });
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (const c of res.choices) {
      const alone = await engine.generate(ids, { maxTokens: 12, temperature: 0.9, seed: 40 + c.index }).done();
      expect(c.text, `choice ${c.index}`).toBe(alone.text);
      expect(c.finish_reason).toBe('length');
    }
    expect(res.usage?.completion_tokens).toBe(36);
    expect(res.usage?.prompt_tokens).toBe(ids.length);
    expect(new Set(res.choices.map((c) => c.text)).size).toBeGreaterThan(1);
  });

  it('streamed: chunks name their choice; every choice assembles, then finishes', async () => {
    const stream = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 8, temperature: 0.7, seed: 3, n: 2, stream: true });
    const text = ['', ''], finish: Array<string | null> = [null, null];
    for await (const chunk of stream)
      for (const c of chunk.choices) {
        text[c.index] += c.delta?.content ?? '';
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
    const whole = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 8, temperature: 0.7, seed: 3, n: 2 });
    expect(text).toEqual(whole.choices.map((c) => c.message.content));
    expect(finish).toEqual(['length', 'length']);
  });
});

describe('prefix cache', () => {
  it('reports cached prompt tokens in usage and /metrics', async () => {
    const system = { role: 'system' as const, content: 'You are a careful Python programmer. '.repeat(8) };
    const ask = (q: string) => client.chat.completions.create({ model: MODEL, messages: [system, { role: 'user', content: q }], max_tokens: 4, temperature: 0 });
    const first = await ask('def one():');
    const second = await ask('def two():');
    const details = (r: typeof first) => (r.usage as unknown as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details;
    expect(details(second).cached_tokens).toBeGreaterThanOrEqual(64);
    expect(details(second).cached_tokens).toBeLessThan(second.usage!.prompt_tokens);
    expect(details(first).cached_tokens).toBeLessThan(details(second).cached_tokens);
    const m = await scrape(srv.url);
    expect(metric(m, 'dflash_prefix_cache_hits_total')).toBeGreaterThan(0);
    expect(metric(m, 'dflash_prefix_cache_queries_total')).toBeGreaterThan(metric(m, 'dflash_prefix_cache_hits_total'));
    expect(metric(m, 'dflash_prefix_cache_pages')).toBeGreaterThan(0);
  });
});
