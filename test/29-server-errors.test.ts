// `dflash serve` error cases over raw HTTP (fetch): every failure in the OpenAI error shape with
// the right status — malformed JSON, schema violations and out-of-range parameters, unknown
// model, prompt longer than the context, unsupported parameters (400); a full queue (429 with
// Retry-After) and a queued client leaving; a missing or wrong API key (401); an engine
// QUEUE_FULL error (429); engine failures before and during a stream (500 / an error chunk);
// unknown routes (404); and a server shutting down (connections refused, or 503 when mounted).
import * as http from 'http';
import type { AddressInfo } from 'net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Engine } from '../lib/engine';
import { createServer } from '../lib/server/app';
import { GenerationStream } from '../lib/stream';
import { eventually, loadPair, MAX_SEQ_LEN, metric, MODEL, Running, scrape, startServer } from './helpers/server';

let engine: Engine;
let srv: Running;

beforeAll(async () => {
  engine = await loadPair();
  srv = await startServer(engine);
});
afterAll(async () => {
  await srv?.close();
  engine?.dispose();
});

function post(url: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** The status and the `error` object of a response, checked to be in the OpenAI shape. */
async function failure(r: Response) {
  const body = await r.json() as { error: { message: string; type: string; param: string | null; code: string | null } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof body.error.message).toBe('string');
  return { status: r.status, ...body.error };
}

const chat = (extra: Record<string, unknown> = {}) => ({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, ...extra });

describe('400 bad requests', () => {
  it('malformed JSON and an empty body', async () => {
    const e = await failure(await post(srv.url, '/v1/chat/completions', '{"model": "code-pair", "messages": ['));
    expect(e).toMatchObject({ status: 400, type: 'invalid_request_error' });
    expect(e.message).toMatch(/not valid JSON/);
    expect((await failure(await post(srv.url, '/v1/completions', ''))).status).toBe(400);
  });

  it.each([
    [{ temperature: 2.5 }, 'temperature', /must be <= 2/],
    [{ temperature: '0.5' }, 'temperature', /must be number/],
    [{ top_p: 0 }, 'top_p', /must be > 0/],
    [{ max_tokens: 0 }, 'max_tokens', /must be >= 1/],
    [{ max_tokens: 1.5 }, 'max_tokens', /must be integer/],
    [{ n: 17 }, 'n', /must be <= 16/],
    [{ top_logprobs: 21, logprobs: true }, 'top_logprobs', /must be <= 20/],
    [{ seed: -1 }, 'seed', /must be >= 0/],
    [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', /must NOT have more than 4 items/],
    [{ messages: [] }, 'messages', /must NOT have fewer than 1 items/],
    [{ messages: [{ role: 'robot', content: 'x' }] }, 'messages[0].role', /allowed values/],
    [{ dflash: { block_size: 1 } }, 'dflash.block_size', /must be >= 2/],
  ])('out of range or mistyped: %j', async (extra, param, message) => {
    const e = await failure(await post(srv.url, '/v1/chat/completions', chat(extra)));
    expect(e).toMatchObject({ status: 400, type: 'invalid_request_error', param });
    expect(e.message).toMatch(message);
  });

  it('a missing required field names it', async () => {
    const e = await failure(await post(srv.url, '/v1/completions', { model: MODEL }));
    expect(e).toMatchObject({ status: 400, param: 'prompt', code: 'missing_required_parameter' });
  });

  it('an unknown model', async () => {
    const e = await failure(await post(srv.url, '/v1/chat/completions', chat({ model: 'gpt-4o' })));
    expect(e).toMatchObject({ status: 400, param: 'model', code: 'model_not_found' });
    expect(e.message).toContain(`'${MODEL}'`);
  });

  it('a prompt (+ max_tokens) longer than the context', async () => {
    const long = 'x = 1\n'.repeat(400); // well over 512 tokens
    const e = await failure(await post(srv.url, '/v1/completions', { model: MODEL, prompt: long, max_tokens: 4 }));
    expect(e).toMatchObject({ status: 400, param: 'prompt', code: 'context_length_exceeded' });
    expect(e.message).toContain(`context is ${MAX_SEQ_LEN} tokens`);
    const prompt = engine.tokenizer.encode('def f():');
    const over = await failure(await post(srv.url, '/v1/completions', { model: MODEL, prompt, max_tokens: MAX_SEQ_LEN - prompt.length + 1 }));
    expect(over).toMatchObject({ status: 400, code: 'context_length_exceeded' });
    expect(over.message).toContain(`needs ${MAX_SEQ_LEN + 1}`);
  });

  it('token ids outside the vocabulary, several prompts, unsupported features, no drafter block', async () => {
    const vocab = engine.config.target.vocabSize;
    expect(await failure(await post(srv.url, '/v1/completions', { model: MODEL, prompt: [1, vocab] }))).toMatchObject({ status: 400, param: 'prompt' });
    expect(await failure(await post(srv.url, '/v1/completions', { model: MODEL, prompt: ['a', 'b'] }))).toMatchObject({ status: 400, param: 'prompt' });
    expect(await failure(await post(srv.url, '/v1/chat/completions', chat({ top_logprobs: 3 })))).toMatchObject({ status: 400, param: 'top_logprobs' });
    expect(await failure(await post(srv.url, '/v1/completions', { model: MODEL, prompt: 'x', n: 2, best_of: 3 }))).toMatchObject({ status: 400, param: 'best_of', code: 'unsupported_parameter' });
    expect(await failure(await post(srv.url, '/v1/completions', { model: MODEL, prompt: 'x', logprobs: 6 }))).toMatchObject({ status: 400, param: 'logprobs' });
    expect(await failure(await post(srv.url, '/v1/chat/completions', chat({ frequency_penalty: 0.5 })))).toMatchObject({ status: 400, param: 'frequency_penalty' });
    expect(await failure(await post(srv.url, '/v1/chat/completions', chat({ messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }))))
      .toMatchObject({ status: 400, param: 'messages[0].content[0]' });
    const block = engine.config.drafter!.blockSize + 1;
    expect(await failure(await post(srv.url, '/v1/chat/completions', chat({ dflash: { block_size: block } })))).toMatchObject({ status: 400, param: 'dflash.block_size' });
  });

  it('unknown routes are 404 in the same shape', async () => {
    expect(await failure(await fetch(`${srv.url}/v1/embeddings`, { method: 'POST' }))).toMatchObject({ status: 404, code: 'not_found' });
  });
});

describe('429 when full', () => {
  it('refuses requests beyond --max-sequences + --queue with Retry-After, and serves the others', async () => {
    const small = await startServer(engine, { maxSequences: 1, queue: 1 });
    try {
      const body = { model: MODEL, prompt: 'def main():\n', max_tokens: 48 };
      const responses = await Promise.all([0, 1, 2, 3].map(() => post(small.url, '/v1/completions', body)));
      const statuses = responses.map((r) => r.status).sort();
      expect(statuses).toEqual([200, 200, 429, 429]);
      for (const r of responses.filter((x) => x.status === 429)) {
        expect(r.headers.get('retry-after')).toBe('1');
        expect(await failure(r)).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
      }
      const texts = await Promise.all(responses.filter((x) => x.status === 200).map(async (r) => (await r.json()).choices[0].text));
      expect(texts[0]).toBe(texts[1]);
      const m = await scrape(small.url);
      expect(metric(m, 'dflash_http_requests_total', { route: '/v1/completions', status: '429' })).toBe(2);
    } finally {
      await small.close();
    }
  });

  it('a client that leaves while queued gives its place up', async () => {
    const small = await startServer(engine, { maxSequences: 1, queue: 1 });
    try {
      const long = post(small.url, '/v1/completions', { model: MODEL, prompt: 'def main():\n', max_tokens: 300 });
      await eventually(async () => metric(await scrape(small.url), 'dflash_running_sequences') === 1, 10_000, 'the first request to run');
      const leaving = new AbortController();
      const queued = fetch(`${small.url}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, signal: leaving.signal,
        body: JSON.stringify({ model: MODEL, prompt: 'x', max_tokens: 2 }),
      }).catch((e: Error) => e);
      await eventually(async () => metric(await scrape(small.url), 'dflash_queued_sequences') === 1, 10_000, 'the second request to queue');
      leaving.abort();
      expect(String(await queued)).toMatch(/abort/i);
      await eventually(async () => {
        const m = await scrape(small.url);
        return metric(m, 'dflash_queued_sequences') === 0 && metric(m, 'dflash_requests_aborted_total', { cause: 'client_disconnect' }) === 1;
      }, 10_000, 'the queued request to leave');
      // Its place is free again: a new request is queued behind the running one, not refused.
      const next = await post(small.url, '/v1/completions', { model: MODEL, prompt: 'x', max_tokens: 2 });
      expect(next.status).toBe(200);
      expect((await long).status).toBe(200);
    } finally {
      await small.close();
    }
  });

  it("maps the engine's own QUEUE_FULL error to 429", async () => {
    // As the engine's scheduler reports it: the stream fails with an Error whose code is QUEUE_FULL.
    const full = () => Object.assign(new Error('admission queue is full'), { code: 'QUEUE_FULL' });
    const failing = new Proxy(engine, {
      get: (target, key) => (key === 'generate' ? () => new GenerationStream(async () => { throw full(); }) : Reflect.get(target, key)),
    });
    const s = await startServer(failing);
    try {
      for (const stream of [true, false]) {
        const r = await post(s.url, '/v1/chat/completions', chat({ stream }));
        expect(r.status).toBe(429);
        expect(r.headers.get('retry-after')).toBe('1');
        expect(await failure(r)).toMatchObject({ code: 'queue_full' });
      }
    } finally {
      await s.close();
    }
  });
});

describe('engine failures', () => {
  it('are 500 before the stream starts and an error chunk before [DONE] after', async () => {
    const failing = new Proxy(engine, {
      get: (target, key) => (key === 'generate'
        ? () => new GenerationStream(async (stream) => {
          stream.pushToken({ id: 5, text: 'partial', drafted: false });
          await new Promise((r) => setTimeout(r, 10));
          throw new Error('device lost');
        })
        : Reflect.get(target, key)),
    });
    const s = await startServer(failing);
    try {
      const whole = await post(s.url, '/v1/completions', { model: MODEL, prompt: 'x' });
      expect(await failure(whole)).toMatchObject({ status: 500, type: 'server_error', message: 'Generation failed: device lost' });
      const streamed = await post(s.url, '/v1/completions', { model: MODEL, prompt: 'x', stream: true });
      expect(streamed.status).toBe(200);
      const events = (await streamed.text()).split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
      expect(JSON.parse(events[0]).choices[0].text).toBe('partial');
      expect(JSON.parse(events[1])).toEqual({ error: { message: 'Generation failed: device lost', type: 'server_error', param: null, code: null } });
      expect(events.slice(2)).toEqual(['[DONE]']);
    } finally {
      await s.close();
    }
  });
});

describe('401 with --api-key', () => {
  it('needs the bearer key on /v1, not on /health and /metrics', async () => {
    const s = await startServer(engine, { apiKey: 'sesame' });
    try {
      const none = await failure(await post(s.url, '/v1/chat/completions', chat()));
      expect(none).toMatchObject({ status: 401, code: 'invalid_api_key' });
      const wrong = await failure(await post(s.url, '/v1/chat/completions', chat(), { authorization: 'Bearer open' }));
      expect(wrong.status).toBe(401);
      expect((await fetch(`${s.url}/v1/models`)).status).toBe(401);
      const ok = await post(s.url, '/v1/chat/completions', chat(), { authorization: 'Bearer sesame' });
      expect(ok.status).toBe(200);
      expect((await fetch(`${s.url}/health`)).status).toBe(200);
      expect((await fetch(`${s.url}/metrics`)).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});

describe('during shutdown', () => {
  it('refuses new connections while a running stream finishes', async () => {
    const s = await startServer(engine);
    const res = await post(s.url, '/v1/completions', { model: MODEL, prompt: 'def main():\n', max_tokens: 60, stream: true });
    const reader = res.body!.getReader();
    let text = new TextDecoder().decode((await reader.read()).value);
    const closing = s.server.shutdown({ timeoutMs: 30_000 });
    await expect(fetch(`${s.url}/health`)).rejects.toThrow();
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    await closing;
    expect(text).toMatch(/"finish_reason":"length".*\n\ndata: \[DONE\]\n\n$/s);
  });

  it('a mounted API answers 503 in the OpenAI shape once shutdown has begun', async () => {
    const api = createServer(engine, { servedModelName: MODEL });
    const app = http.createServer((req, res) => api.handler(req, res));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    try {
      expect((await fetch(`${base}/health`)).status).toBe(200);
      await api.shutdown({ timeoutMs: 1_000 });
      expect(await failure(await post(base, '/v1/chat/completions', chat()))).toMatchObject({ status: 503, code: 'shutting_down' });
      expect((await fetch(`${base}/health`)).status).toBe(503);
    } finally {
      await new Promise((r) => app.close(r));
    }
  });
});
