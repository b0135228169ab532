// `dflash serve` through the official `openai` npm client against a real server on 127.0.0.1:
// chat completions and completions, whole and streamed, compared with the same generation run
// on the engine directly; the dflash stats extension; stop strings, seeds, plain decoding;
// a client that aborts mid-stream (generation stops, pages come back); /v1/models, /health,
// /metrics; and the API mounted into an existing Node http server.
import * as http from 'http';
import type { AddressInfo } from 'net';

import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Engine } from '../lib/engine';
import { createServer } from '../lib/server/app';
import { ServerMetrics } from '../lib/server/metrics';
import { eventually, loadPair, metric, MODEL, Running, scrape, startServer } from './helpers/server';

let engine: Engine;
let srv: Running;
let client: OpenAI;

beforeAll(async () => {
  engine = await loadPair();
  srv = await startServer(engine);
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await srv?.close();
  engine?.dispose();
});

const MESSAGES = [{ role: 'system' as const, content: 'You write Python.' }, { role: 'user' as const, content: 'def fib(n):' }];
const PROMPT = 'def get_docstring(node, clean=True):\n    """\n';
type WithDflash = { dflash?: Record<string, unknown> };

describe('chat completions', () => {
  it('answers with the chat template applied, usage and the dflash stats of the generation', async () => {
    const direct = await engine.generate(engine.tokenizer.encodeChat(MESSAGES), { maxTokens: 12, temperature: 0 }).done();
    const res = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 12, temperature: 0 });
    expect(res.object).toBe('chat.completion');
    expect(res.model).toBe(MODEL);
    expect(res.choices).toHaveLength(1);
    expect(res.choices[0].message).toEqual({ role: 'assistant', content: direct.text });
    expect(res.choices[0].finish_reason).toBe('length');
    // The direct generation left the prompt's full pages (16 tokens each) in the prefix cache.
    const cached = Math.floor((direct.stats.promptTokens - 1) / 16) * 16;
    expect(res.usage).toEqual({
      prompt_tokens: direct.stats.promptTokens, completion_tokens: 12, total_tokens: direct.stats.promptTokens + 12,
      prompt_tokens_details: { cached_tokens: cached },
    });
    const ext = (res as WithDflash).dflash!;
    expect(ext.speculative).toBe(true);
    expect(ext.steps).toBe(direct.stats.steps);
    expect(ext.mean_acceptance_length).toBeCloseTo(direct.stats.meanAcceptanceLength, 3);
    expect(ext.per_position_acceptance).toHaveLength(engine.config.drafter!.blockSize - 1);
    expect(ext.ttft_ms as number).toBeGreaterThan(0);
  });

  it('streams the same text in chunks, then the finish chunk, the usage chunk and [DONE]', async () => {
    const whole = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_completion_tokens: 10 });
    const stream = await client.chat.completions.create({
      model: MODEL, messages: MESSAGES, max_completion_tokens: 10, stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(whole.choices[0].message.content);
    const closing = chunks[chunks.length - 2];
    expect(closing.choices[0].finish_reason).toBe('length');
    expect((closing as WithDflash).dflash?.steps).toBe((whole as WithDflash).dflash?.steps);
    const last = chunks[chunks.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(whole.usage);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('samples reproducibly with a seed; plain decoding on request', async () => {
    const ask = (seed: number) => client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 16, temperature: 0.9, seed });
    const [a, b] = await Promise.all([ask(7), ask(7)]);
    expect(a.choices[0].message.content).toBe(b.choices[0].message.content);

    const plain = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 8, dflash: { speculative: false } } as never) as OpenAI.ChatCompletion;
    const direct = await engine.generate(engine.tokenizer.encodeChat(MESSAGES), { maxTokens: 8, temperature: 0, speculative: false }).done();
    expect(plain.choices[0].message.content).toBe(direct.text);
    expect((plain as WithDflash).dflash).toMatchObject({ speculative: false, mean_acceptance_length: 1, acceptance_rate: 0 });
  });
});

describe('completions', () => {
  it('completes a prompt, whole and streamed', async () => {
    const direct = await engine.generate(PROMPT, { maxTokens: 12, temperature: 0 }).done();
    const res = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12 });
    expect(res.object).toBe('text_completion');
    expect(res.choices[0].text).toBe(direct.text);
    expect(res.choices[0].finish_reason).toBe('length');
    expect(res.usage?.prompt_tokens).toBe(engine.tokenizer.encode(PROMPT).length);

    const stream = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const c of stream) {
      text += c.choices[0].text;
      finish = c.choices[0].finish_reason ?? finish;
    }
    expect(text).toBe(direct.text);
    expect(finish).toBe('length');
  });

  it('stops before a stop string with finish_reason "stop"; accepts token ids as the prompt', async () => {
    const full = (await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24 })).choices[0].text;
    const stop = full.slice(Math.floor(full.length / 2)).trim().slice(0, 3);
    expect(stop.length).toBeGreaterThan(0);
    const res = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, stop: [stop] });
    expect(res.choices[0].finish_reason).toBe('stop');
    expect(res.choices[0].text).toBe(full.slice(0, full.indexOf(stop)));

    const ids = await client.completions.create({ model: MODEL, prompt: engine.tokenizer.encode(PROMPT), max_tokens: 24 });
    expect(ids.choices[0].text).toBe(full);
  });
});

describe('aborting', () => {
  it('a client that disconnects mid-stream stops its generation and frees its pages', async () => {
    const before = await scrape(srv.url);
    const generatedBefore = metric(before, 'dflash_generated_tokens_total', { mode: 'speculative' }) ?? 0;
    const controller = new AbortController();
    const stream = await client.completions.create({ model: MODEL, prompt: 'def main():\n', max_tokens: 400, stream: true }, { signal: controller.signal });
    let chunks = 0;
    try {
      // Stop reading at the abort: chunks the client had already buffered would still be yielded.
      for await (const _ of stream) {
        if (++chunks === 3) {
          controller.abort();
          break;
        }
      }
    } catch (e) {
      expect(String(e)).toMatch(/abort/i); // the client may end its iteration quietly or with an AbortError
    }
    expect(chunks).toBe(3);

    await eventually(async () => {
      const m = await scrape(srv.url);
      return metric(m, 'dflash_requests_aborted_total', { cause: 'client_disconnect' }) === 1 && metric(m, 'dflash_running_sequences') === 0;
    }, 10_000, 'the aborted request to be accounted');
    const after = await scrape(srv.url);
    expect(metric(after, 'dflash_generations_finished_total', { finish_reason: 'abort' })).toBe(1);
    // Far fewer than the 400 requested tokens were generated: the abort reached the engine.
    expect((metric(after, 'dflash_generated_tokens_total', { mode: 'speculative' }) ?? 0) - generatedBefore).toBeLessThan(200);
    expect(metric(after, 'dflash_kv_free_pages')).toBe(metric(after, 'dflash_kv_total_pages'));
    const stats = engine.stats();
    expect(stats.freePages).toBe(stats.totalPages);
  });
});

describe('models, health and metrics', () => {
  it('lists the served model and reports health', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    expect(models.data[0]).toMatchObject({ object: 'model', owned_by: 'dflash', max_model_len: 512 });
    const health = await fetch(`${srv.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
  });

  it('exports requests by status, sequences, pages, tokens, TTFT/TPOT and acceptance in Prometheus text', async () => {
    const r = await fetch(`${srv.url}/metrics`);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const m = await r.text();
    expect(metric(m, 'dflash_http_requests_total', { route: '/v1/chat/completions', status: '200' })).toBeGreaterThanOrEqual(6);
    expect(metric(m, 'dflash_http_requests_total', { route: '/v1/completions', status: '200' })).toBeGreaterThanOrEqual(5);
    expect(metric(m, 'dflash_queued_sequences')).toBe(0);
    expect(metric(m, 'dflash_generated_tokens_total', { mode: 'plain' })).toBe(8);
    expect(metric(m, 'dflash_time_to_first_token_seconds_count', { mode: 'speculative' })).toBeGreaterThanOrEqual(10);
    expect(metric(m, 'dflash_time_per_output_token_seconds_count', { mode: 'speculative' })).toBeGreaterThanOrEqual(10);
    const tau = metric(m, 'dflash_mean_acceptance_length')!;
    expect(tau).toBeGreaterThanOrEqual(1);
    const steps = metric(m, 'dflash_speculative_steps_total')!;
    const accepted1 = metric(m, 'dflash_draft_position_accepted_total', { position: '1' })!;
    expect(metric(m, 'dflash_draft_position_acceptance', { position: '1' })).toBeCloseTo(accepted1 / steps, 6);
    expect(metric(m, 'dflash_draft_position_acceptance', { position: String(engine.config.drafter!.blockSize - 1) })).toBeDefined();
  });
});

describe('metrics before any sample', () => {
  it('never exports NaN: the event-loop delay gauges read 0 until sampled, then keep their last values', async () => {
    const samples = (t: string) => t.split('\n').filter((l) => l && !l.startsWith('#'));
    const lag = (t: string) => samples(t).filter((l) => l.includes('eventloop_lag_')).map((l) => Number(l.split(' ').pop()));
    const { registry } = new ServerMetrics({ running: () => 0, queued: () => 0, pages: () => ({}) });
    const scrapes = [await registry.metrics(), await registry.metrics()];  // at start, then back to back
    await new Promise((r) => setTimeout(r, 100));
    scrapes.push(await registry.metrics(), await registry.metrics());
    for (const t of scrapes) {
      expect(samples(t).filter((l) => /\s(NaN|Nan|[+-]?Inf)$/i.test(l))).toEqual([]);
      for (const v of lag(t)) expect(v).toBeLessThan(60);  // not 2^63 ns
    }
    expect(lag(scrapes[0]).slice(1)).toEqual(Array(7).fill(0));
    expect(lag(scrapes[3]).slice(1)).toEqual(lag(scrapes[2]).slice(1));
    expect(Math.max(...lag(scrapes[2]).slice(1))).toBeGreaterThan(0);
  });
});

describe('mounting', () => {
  it('serves from an existing Node http server through handler()', async () => {
    const api = createServer(engine, { servedModelName: MODEL, maxSeqLen: 512, defaults: { temperature: 0 } });
    const app = http.createServer((req, res) => {
      if (req.url?.startsWith('/llm/')) {
        req.url = req.url.slice('/llm'.length);
        return api.handler(req, res);
      }
      res.end('the rest of the app');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
      const mounted = new OpenAI({ baseURL: `${base}/llm/v1`, apiKey: 'unused', maxRetries: 0 });
      const res = await mounted.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 4 });
      expect(res.choices[0].text).toBe((await engine.generate(PROMPT, { maxTokens: 4, temperature: 0 }).done()).text);
      expect(await (await fetch(`${base}/other`)).text()).toBe('the rest of the app');
    } finally {
      await api.shutdown({ timeoutMs: 1000 });
      await new Promise((r) => app.close(r));
    }
  });
});
