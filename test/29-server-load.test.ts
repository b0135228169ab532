// Load: 64 concurrent streaming clients (the official `openai` client, loopback only, short
// generations) against a server that runs 4 sequences at once and queues the rest. Every
// stream's text must equal the same request served alone, each stream must carry only its own
// chunks (one id, its own finish and usage), and nothing may be lost: 64 finished generations,
// no request left running or queued, every KV page back in the pool.
import * as fs from 'fs';
import * as path from 'path';

import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Engine } from '../lib/engine';
import { loadPair, metric, metricSum, MODEL, ROOT, Running, scrape, startServer } from './helpers/server';

const CLIENTS = 64;
const MAX_TOKENS = 8;

let engine: Engine;
let srv: Running;
let client: OpenAI;

beforeAll(async () => {
  engine = await loadPair(4);
  srv = await startServer(engine, { maxSequences: 4, queue: CLIENTS });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
});
afterAll(async () => {
  await srv?.close();
  engine?.dispose();
});

interface Result { text: string; ids: Set<string>; finish: string | null; completionTokens?: number }

/** 32 held-out code prompts, each as a greedy completion and as a seeded sampled chat; every
 *  fourth request decodes plainly, so speculative and plain sequences run side by side. */
function requests() {
  const prompts = fs.readFileSync(path.join(ROOT, 'bench', 'prompts', 'heldout-code.jsonl'), 'utf8')
    .trim().split('\n').map((l) => JSON.parse(l).prompt as string);
  return Array.from({ length: CLIENTS }, (_, i) => {
    const prompt = prompts[i % prompts.length];
    const dflash = { speculative: i % 4 !== 3 };
    return i < prompts.length
      ? { kind: 'completion' as const, body: { model: MODEL, prompt, max_tokens: MAX_TOKENS, temperature: 0, dflash } }
      : { kind: 'chat' as const, body: { model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: MAX_TOKENS, temperature: 0.8, seed: 1000 + i, dflash } };
  });
}

async function streamOne(r: ReturnType<typeof requests>[number]): Promise<Result> {
  const out: Result = { text: '', ids: new Set(), finish: null };
  const opts = { stream: true as const, stream_options: { include_usage: true } };
  if (r.kind === 'completion') {
    for await (const c of await client.completions.create({ ...r.body, ...opts } as never) as AsyncIterable<OpenAI.Completion>) {
      out.ids.add(c.id);
      if (c.choices[0]) { out.text += c.choices[0].text; out.finish = c.choices[0].finish_reason ?? out.finish; }
      if (c.usage) out.completionTokens = c.usage.completion_tokens;
    }
  } else {
    for await (const c of await client.chat.completions.create({ ...r.body, ...opts } as never) as AsyncIterable<OpenAI.ChatCompletionChunk>) {
      out.ids.add(c.id);
      if (c.choices[0]) { out.text += c.choices[0].delta.content ?? ''; out.finish = c.choices[0].finish_reason ?? out.finish; }
      if (c.usage) out.completionTokens = c.usage.completion_tokens;
    }
  }
  return out;
}

describe('64 concurrent streaming clients', () => {
  it('each get the text of their request served alone; nothing lost or mixed', async () => {
    const reqs = requests();
    const alone: Result[] = [];
    for (const r of reqs) alone.push(await streamOne(r));
    const before = await scrape(srv.url);
    const finishedBefore = metricSum(before, 'dflash_generations_finished_total');

    // Sample the server while the load runs, to see that requests really overlapped.
    let maxRunning = 0, maxQueued = 0, sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const m = await scrape(srv.url);
        maxRunning = Math.max(maxRunning, metric(m, 'dflash_running_sequences') ?? 0);
        maxQueued = Math.max(maxQueued, metric(m, 'dflash_queued_sequences') ?? 0);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const together = await Promise.all(reqs.map(streamOne)).finally(() => { sampling = false; });
    await sampler;

    const streamIds = new Set<string>();
    together.forEach((t, i) => {
      expect(t.ids.size, `request ${i}: chunks of one stream share one id`).toBe(1);
      streamIds.add([...t.ids][0]);
      expect(t.text, `request ${i} (${reqs[i].kind})`).toBe(alone[i].text);
      expect(t.finish).toBe(alone[i].finish);
      expect(t.completionTokens).toBe(alone[i].completionTokens);
    });
    expect(streamIds.size, 'every stream has its own id').toBe(CLIENTS);
    expect(new Set(alone.map((a) => a.text)).size, 'the requests differ from each other').toBeGreaterThan(CLIENTS / 2);

    expect(maxRunning).toBeLessThanOrEqual(4);
    expect(maxQueued, 'requests waited for a slot: the clients overlapped').toBeGreaterThan(0);
    const after = await scrape(srv.url);
    expect(metricSum(after, 'dflash_generations_finished_total') - finishedBefore).toBe(CLIENTS);
    expect(metricSum(after, 'dflash_requests_aborted_total')).toBe(0);
    expect(metric(after, 'dflash_running_sequences')).toBe(0);
    expect(metric(after, 'dflash_queued_sequences')).toBe(0);
    expect(metric(after, 'dflash_kv_free_pages')).toBe(metric(after, 'dflash_kv_total_pages'));
  });
});
