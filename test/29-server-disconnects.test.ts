// Clients that leave at any moment: 50 requests against a server that runs 2 sequences at once
// and queues the rest, each disconnecting at a moment drawn from a seeded generator (while
// queued, before its first token, mid-stream, during the last chunk). Every request must be
// accounted exactly once in /metrics (aborted, or finished on its own), its generation cancelled,
// every KV page back in the pool, and the server must still answer afterwards. Also, without
// timing luck, the ways a request went unaccounted: a chunk written while the socket is destroyed
// but its 'close' not yet emitted (the SSE send then never settles: the request hung before its
// metrics, holding its admission slot), a connection that closed before the handler ran, and a
// client that leaves while still sending its body.
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Engine } from '../lib/engine';
import { DoneEvent, GenerationStream } from '../lib/stream';
import { ChunkWriter, ConnectionClosed, onClientGone } from '../lib/server/streaming';
import { eventually, loadPair, metric, metricSum, MODEL, ROOT, Running, scrape, startServer } from './helpers/server';

const CLIENTS = 50;
const IN_FLIGHT = 4;    // 2 sequences run at once, the others wait in the queue
const MAX_TOKENS = 12;
const SEED = 0x5eed;

/** mulberry32: a small seeded generator, so that a failing run can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Moment = 'queued' | 'before-first-token' | 'mid-stream' | 'last-chunk';
const MOMENTS: Moment[] = ['queued', 'before-first-token', 'mid-stream', 'last-chunk'];

interface Plan {
  moment: Moment;
  stream: boolean;
  chat: boolean;
  prompt: string;
  maxTokens: number;
  /** queued / before-first-token: milliseconds after the request was sent. */
  delayMs: number;
  /** mid-stream: leave after this many SSE events. */
  events: number;
}

function plans(): Plan[] {
  const random = rng(SEED);
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
  const prompts = fs.readFileSync(path.join(ROOT, 'bench', 'prompts', 'heldout-code.jsonl'), 'utf8')
    .trim().split('\n').map((l) => JSON.parse(l).prompt as string);
  const all = Array.from({ length: CLIENTS }, (_, i): Plan => {
    const moment = MOMENTS[i % MOMENTS.length];  // every moment as often as the others, in a seeded order below
    return {
      moment,
      // Before the first token: a whole (non-streamed) response sends nothing until the end, so
      // leaving at any time before it is "before the first token" whatever the generation did.
      stream: moment !== 'before-first-token' || random() < 0.5,
      chat: random() < 0.5,
      prompt: pick(prompts),
      // Longer generations and a wider spread before the first token: some leave while queued,
      // some during prefill or decoding (a whole response sends nothing before its end).
      maxTokens: moment === 'before-first-token' ? 4 * MAX_TOKENS : MAX_TOKENS,
      delayMs: Math.floor(random() * (moment === 'queued' ? 15 : 800)),
      events: 1 + Math.floor(random() * 4),
    };
  });
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all;
}

type Result = 'left' | 'completed' | 'failed';

/** One request on its own connection, cut (the socket destroyed) at its planned moment. */
function runClient(url: string, plan: Plan): Promise<{ result: Result; status?: number }> {
  const body = JSON.stringify({
    model: MODEL, max_tokens: plan.maxTokens, stream: plan.stream, stream_options: plan.stream ? { include_usage: true } : undefined,
    ...(plan.chat ? { messages: [{ role: 'user', content: plan.prompt }] } : { prompt: plan.prompt }),
  });
  const target = new URL(`${url}/v1/${plan.chat ? 'chat/completions' : 'completions'}`);
  return new Promise((resolve) => {
    let status: number | undefined;
    let settled = false;
    const settle = (result: Result) => {
      if (settled) return;
      settled = true;
      resolve({ result, status });
    };
    const req = http.request({
      host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    const leave = () => {
      if (settled) return;
      settle('left');
      req.destroy();
    };
    req.on('error', () => settle('failed'));
    req.on('response', (res) => {
      status = res.statusCode;
      let buffer = '';
      let events = 0;
      res.on('data', (d: Buffer) => {
        buffer += d.toString('utf8');
        for (let end = buffer.indexOf('\n\n'); end >= 0 && !settled; end = buffer.indexOf('\n\n')) {
          const event = buffer.slice(0, end).replace(/^data: /, '');
          buffer = buffer.slice(end + 2);
          events += 1;
          if (plan.moment === 'mid-stream' && events >= plan.events) leave();
          if (plan.moment === 'last-chunk' && event !== '[DONE]' && !event.startsWith(':')) {
            const chunk = JSON.parse(event) as { choices: Array<{ finish_reason: string | null }> };
            if (chunk.choices[0]?.finish_reason) leave();  // the finish chunk: usage and [DONE] still to come
          }
        }
      });
      res.on('end', () => settle('completed'));
      res.on('error', () => settle('failed'));
      res.on('close', () => settle('completed'));
    });
    req.end(body, () => {
      if (plan.moment === 'queued' || plan.moment === 'before-first-token') setTimeout(leave, plan.delayMs);
    });
  });
}

/** What /metrics says every request ended as: aborted, or finished by its own generation. */
function outcomes(m: string) {
  const aborted = metricSum(m, 'dflash_requests_aborted_total');
  const finished = metricSum(m, 'dflash_generations_finished_total');
  const abortedGenerations = metric(m, 'dflash_generations_finished_total', { finish_reason: 'abort' }) ?? 0;
  return { aborted, abortedGenerations, finishedOnTheirOwn: finished - abortedGenerations };
}

describe('clients that disconnect at random moments', () => {
  let engine: Engine;
  let srv: Running;
  beforeAll(async () => {
    engine = await loadPair(2);
    srv = await startServer(engine, { maxSequences: 2, queue: 64 });
  });
  afterAll(async () => {
    await srv?.close();
    engine?.dispose();
  });

  it(`${CLIENTS} requests: each accounted once, generation cancelled, pages freed; the server still answers`, async () => {
    const ask = (body: object) => fetch(`${srv.url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    // Compile the programs of one and two sequences first, so that the clients' moments fall
    // into generations rather than compiles.
    const warm = { model: MODEL, prompt: 'def main():\n', max_tokens: MAX_TOKENS };
    for (const r of await Promise.all([ask(warm), ask(warm), ask({ ...warm, stream: true })])) {
      expect(r.status).toBe(200);
      await r.text();
    }

    const before = outcomes(await scrape(srv.url));
    const all = plans();
    expect(new Set(all.map((p) => p.moment)).size).toBe(MOMENTS.length);
    const results: Array<{ result: Result; status?: number }> = [];
    let next = 0;
    let maxQueued = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxQueued = Math.max(maxQueued, metric(await scrape(srv.url), 'dflash_queued_sequences') ?? 0);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next < all.length) {
        const i = next++;
        results[i] = await runClient(srv.url, all[i]);
      }
    })).finally(() => { sampling = false; });
    await sampler;
    expect(results.filter((r) => r.result === 'failed')).toEqual([]);
    for (const r of results) if (r.status !== undefined) expect(r.status).toBe(200);
    expect(results.filter((r) => r.result === 'left').length, 'most clients left before their response ended').toBeGreaterThan(CLIENTS / 2);
    expect(maxQueued, 'requests waited for a slot while others ran').toBeGreaterThan(0);

    // Every request ends as exactly one of: aborted (queued, or its generation cut short, then
    // also counted as a generation finished with reason "abort"), or finished on its own.
    let now = outcomes(await scrape(srv.url));
    const accounted = () => (now.aborted - before.aborted) + (now.finishedOnTheirOwn - before.finishedOnTheirOwn);
    await eventually(async () => {
      now = outcomes(await scrape(srv.url));
      return accounted() >= CLIENTS && metric(await scrape(srv.url), 'dflash_running_sequences') === 0;
    }, 20_000, `all ${CLIENTS} requests to be accounted (aborted or finished)`);
    await new Promise((r) => setTimeout(r, 200));  // nothing counted twice, late
    now = outcomes(await scrape(srv.url));
    expect(accounted()).toBe(CLIENTS);
    expect(now.abortedGenerations - before.abortedGenerations).toBeLessThanOrEqual(now.aborted - before.aborted);
    expect(now.aborted - before.aborted, 'clients that left were counted as aborted').toBeGreaterThan(0);

    const m = await scrape(srv.url);
    expect(metric(m, 'dflash_running_sequences')).toBe(0);
    expect(metric(m, 'dflash_queued_sequences')).toBe(0);
    expect(metric(m, 'dflash_kv_free_pages')).toBe(metric(m, 'dflash_kv_total_pages'));
    const stats = engine.stats();
    expect(stats.runningSequences).toBe(0);
    expect(stats.queuedSequences).toBe(0);
    expect(stats.freePages).toBe(stats.totalPages);

    // Both slots are free again (a request stuck after its client left would hold one): two
    // requests at once, each answered in full.
    const direct = await engine.generate('def main():\n', { maxTokens: MAX_TOKENS, temperature: 0 }).done();
    const answers = await Promise.all([ask(warm), ask(warm)]);
    for (const r of answers) {
      expect(r.status).toBe(200);
      expect(((await r.json()) as { choices: Array<{ text: string }> }).choices[0].text).toBe(direct.text);
    }
  });

  it('a client that leaves while its body is still being sent is counted as aborted, once', async () => {
    const before = metricSum(await scrape(srv.url), 'dflash_requests_aborted_total');
    const target = new URL(`${srv.url}/v1/completions`);
    const req = http.request({
      host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': 1000 },
    });
    req.on('error', () => undefined);
    req.write('{"model": "code-pair", ');
    await new Promise((r) => setTimeout(r, 200));
    req.destroy();
    await eventually(async () => metricSum(await scrape(srv.url), 'dflash_requests_aborted_total') === before + 1, 5_000, 'the request to be counted');
    await new Promise((r) => setTimeout(r, 200));
    expect(metricSum(await scrape(srv.url), 'dflash_requests_aborted_total')).toBe(before + 1);
  });

  it('a client that leaves while chunks are written back to back is accounted every time', async () => {
    const rapid = await startServer(rapidEngine(engine), { maxSequences: 2 });
    try {
      const leaving = 10;
      const plan: Plan = { moment: 'mid-stream', stream: true, chat: false, prompt: 'def main():\n', maxTokens: MAX_TOKENS, delayMs: 0, events: 3 };
      for (let i = 0; i < leaving; i++) expect((await runClient(rapid.url, plan)).result).toBe('left');
      await eventually(async () => metric(await scrape(rapid.url), 'dflash_requests_aborted_total', { cause: 'client_disconnect' }) === leaving,
        5_000, `the ${leaving} requests whose clients left to be counted as aborted`);
      const m = await scrape(rapid.url);
      expect(metric(m, 'dflash_generations_finished_total', { finish_reason: 'abort' })).toBe(leaving);
      // Their admission slots came back: the next request waits for none.
      const ok = await runClient(rapid.url, { ...plan, moment: 'last-chunk' });
      expect(ok.status).toBe(200);
    } finally {
      // Bounded: a request stuck in a write would hold the shutdown forever.
      await Promise.race([rapid.close(), new Promise((r) => setTimeout(r, 5_000))]);
    }
  });
});

/** An engine whose generations push a token on every turn of the event loop until aborted: a
 *  client that leaves mid-stream then always has a chunk written while its socket is destroyed
 *  and its response not yet closed (the window in which @fastify/sse's send() never settles). */
function rapidEngine(engine: Engine): Engine {
  const generate = () => new GenerationStream(async (stream, signal) => {
    let tokens = 0;
    while (!signal.aborted && tokens < 2_000) {
      await new Promise((r) => setImmediate(r));
      stream.pushToken({ id: 1, text: ' x', drafted: false });
      tokens += 1;
    }
    const stats = {
      promptTokens: 1, cachedTokens: 0, tokens, steps: tokens, meanAcceptanceLength: 1, acceptanceRate: 0, perPositionAcceptance: [],
      ttft: 0, tpot: 0, tokensPerSecond: 0, deviceSeconds: 0, hostOverheadSeconds: 0,
    };
    return { reason: signal.aborted ? 'abort' : 'maxTokens', text: ' x'.repeat(tokens), ids: Array(tokens).fill(1), stats } satisfies DoneEvent;
  });
  return new Proxy(engine, { get: (target, key) => (key === 'generate' ? generate : Reflect.get(target, key)) });
}

/** Just enough of a Fastify reply for ChunkWriter / onClientGone: a raw response and reply.sse. */
function fakeReply(opts: { socketDestroyed?: boolean; destroyed?: boolean; send?: () => Promise<void> } = {}) {
  const raw = Object.assign(new EventEmitter(), {
    destroyed: opts.destroyed ?? false,
    writableFinished: false,
    socket: { destroyed: opts.socketDestroyed ?? false },
  });
  const sent: unknown[] = [];
  const reply = {
    raw,
    hijack() {},
    sse: { isConnected: true, send: async (m: unknown) => { sent.push(m); return opts.send?.(); } },
  };
  const shaper = { opening: () => [] };
  return { raw, reply, sent, writer: () => new ChunkWriter(reply as never, shaper as never, 1) };
}

describe('what left requests unaccounted', () => {
  it('a chunk written as the connection dies rejects once it closes, though the SSE send never settles', async () => {
    // A write to a socket destroyed before its 'close' event returns false; @fastify/sse then
    // waits for a 'drain' or 'error' that never come.
    const f = fakeReply({ send: () => new Promise<void>(() => undefined) });
    const out = f.writer();
    const write = out.write({ n: 1 });
    let settled = false;
    write.catch(() => undefined).finally(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    f.raw.socket.destroyed = true;
    f.raw.destroyed = true;
    f.raw.emit('close');
    await expect(write).rejects.toBeInstanceOf(ConnectionClosed);
    await expect(out.write({ n: 2 })).rejects.toBeInstanceOf(ConnectionClosed);
  });

  it('a connection that is gone or going fails writes at once, and is noticed when the handler runs after its close', async () => {
    for (const gone of [{ socketDestroyed: true }, { destroyed: true }]) {
      const f = fakeReply(gone);
      await expect(f.writer().write({ n: 1 })).rejects.toBeInstanceOf(ConnectionClosed);
      expect(f.sent).toEqual([]);
      let calls = 0;
      onClientGone(f.raw as never, () => calls++);
      expect(calls).toBe(1);
      f.raw.emit('close');
      expect(calls).toBe(1);
    }
    const open = fakeReply();
    let calls = 0;
    onClientGone(open.raw as never, () => calls++);
    expect(calls).toBe(0);
    open.raw.emit('close');
    expect(calls).toBe(1);
    const finished = fakeReply();
    onClientGone(finished.raw as never, () => calls++);
    finished.raw.writableFinished = true;
    finished.raw.emit('close');
    expect(calls).toBe(1);  // a response that ended normally is no disconnect
  });
});
