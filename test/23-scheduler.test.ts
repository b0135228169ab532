// The native scheduler under concurrency (continuous batching): every stream's greedy output is
// its output alone, token for token, plain and speculative, with unchanged acceptance (τ) at a
// fixed block; each iteration copies one buffer to the host whatever the number of sequences;
// the KV cache is never copied; programs are compiled once per bucket; the event loop stays
// free while 32 streams generate; a bounded queue, preemption when pages run out, and aborts
// that free pages at the next iteration.
import * as path from 'path';
import { monitorEventLoopDelay } from 'perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DoneEvent, Engine } from '../lib';

const MODELS = path.join(__dirname, 'fixtures', 'models');

function prompts(n: number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from({ length: 3 + ((i * 7) % 29) }, (_, k) => (i * 31 + k * 17 + 5) % 256));
}

describe('continuous batching: outputs and acceptance equal the solo run', () => {
  let engine: Engine;
  const compiled: string[] = [];
  beforeAll(async () => {
    // adaptive: false fixes each step's block (the drafter's 8), so τ is comparable run to run.
    engine = await Engine.load({
      target: path.join(MODELS, 'qwen3-f32'), drafter: path.join(MODELS, 'qwen3-f32-dflash'),
      maxSeqLen: 96, maxSequences: 64, adaptive: false, cacheDir: false,
      onProgress: (p) => { if (p.phase === 'program' && p.kind === 'compile-done') compiled.push(p.program); },
    });
    engine.on('program', (p) => { if (p.kind === 'compile-done') compiled.push(p.program); });
  });
  afterAll(() => engine?.dispose());

  const ALL = prompts(64);
  const solo = new Map<string, DoneEvent>();
  const key = (i: number, spec: boolean) => `${i}/${spec}`;

  it('solo runs', async () => {
    for (let i = 0; i < ALL.length; i++)
      for (const spec of [false, true]) {
        if (i >= 16 && spec === false) continue;  // plain rows beyond 16 are covered by the mixed run
        solo.set(key(i, spec), await engine.generate(ALL[i], { maxTokens: 24, speculative: spec ? undefined : false }).done());
      }
  });

  for (const n of [4, 16, 64]) {
    it(`${n} streams at once, speculative and plain rows mixed`, async () => {
      const before = engine.stats();
      const runs = ALL.slice(0, n).map((p, i) => {
        const spec = n === 64 || i % 2 === 0;
        return engine.generate(p, { maxTokens: 24, speculative: spec ? undefined : false }).done().then((d) => ({ i, spec, d }));
      });
      const done = await Promise.all(runs);
      for (const { i, spec, d } of done) {
        const ref = solo.get(key(i, spec))!;
        expect(d.ids, `stream ${i} (${spec ? 'speculative' : 'plain'})`).toEqual(ref.ids);
        expect(d.stats.meanAcceptanceLength, `stream ${i} τ`).toBe(ref.stats.meanAcceptanceLength);
        expect(d.stats.steps).toBe(ref.stats.steps);
      }
      const after = engine.stats();
      // One host transfer per decode iteration, however many sequences share it; no cache copy.
      expect(after.hostTransfers - before.hostTransfers).toBe(after.decodeIterations - before.decodeIterations);
      expect(after.decodeIterations - before.decodeIterations).toBeLessThan(done.reduce((a, r) => a + r.d.stats.steps, 0) / (n / 2));
      expect(after.cacheCopies).toBe(0);
      expect(after.freePages).toBe(after.totalPages);
      expect(after.runningSequences).toBe(0);
    });
  }

  it('compiles each program once per bucket', async () => {
    await Promise.all(ALL.slice(0, 16).map((p) => engine.generate(p, { maxTokens: 24 }).done()));
    expect(compiled.length).toBe(engine.stats().compiles);
    expect(compiled.length).toBeGreaterThan(4);
    expect(new Set(compiled).size, 'a program compiled twice').toBe(compiled.length);
  });
});

describe('the event loop never waits', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load({ target: path.join(MODELS, 'qwen3-f32'), drafter: path.join(MODELS, 'qwen3-f32-dflash'), maxSeqLen: 160, maxSequences: 32 });
    await engine.generate([1, 2, 3], { maxTokens: 8 }).done();  // warm
  });
  afterAll(() => engine?.dispose());

  it('event-loop delay p99 stays within a few ms while 32 streams generate', async () => {
    // Warm the 32-row buckets first, so compiles (which run on the scheduler thread, not here,
    // but take both cores) are not part of the measurement.
    await Promise.all(prompts(32).map((p) => engine.generate(p, { maxTokens: 40 }).done()));
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    let tokens = 0;
    const streams = prompts(32).map((p) => {
      const s = engine.generate(p, { maxTokens: 100 });
      s.on('token', () => tokens++);
      return s.done();
    });
    // The JS thread also keeps doing other work meanwhile.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    await Promise.all(streams);
    clearInterval(timer);
    h.disable();
    const p99 = h.percentile(99) / 1e6;
    expect(tokens).toBeGreaterThan(32 * 50);
    expect(ticks).toBeGreaterThan(5);
    console.log(`event-loop delay p99 ${p99.toFixed(2)} ms, max ${(h.max / 1e6).toFixed(2)} ms, ${tokens} tokens`);
    expect(p99, `event-loop delay p99 ${p99.toFixed(1)} ms`).toBeLessThan(20);
  });

  it('stats() and generate() answer at once while the device is busy', async () => {
    const streams = prompts(32).map((p) => engine.generate(p, { maxTokens: 60 }).done());
    await new Promise((r) => setTimeout(r, 50));
    let worst = 0;
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      engine.stats();
      const s = engine.generate([9, 9], { maxTokens: 2 });
      worst = Math.max(worst, performance.now() - t0);
      streams.push(s.done());
    }
    await Promise.all(streams);
    expect(worst).toBeLessThan(5);
  });
});

describe('admission, queue and preemption', () => {
  it('a full queue fails the new stream with code QUEUE_FULL; the others complete', async () => {
    const e = await Engine.load({ target: path.join(MODELS, 'qwen3-f32'), maxSeqLen: 64, maxSequences: 1, maxQueue: 2 });
    try {
      // One runs, two wait; the rest (submitted within a few ms, while the first still runs) are refused.
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => e.generate([i + 1, 2, 3], { maxTokens: 60 }).done()));
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(rejected.length).toBeGreaterThan(0);
      for (const r of rejected) {
        expect(r.reason.code).toBe('QUEUE_FULL');
        expect(String(r.reason.message)).toMatch(/queue full: \d+ requests are waiting for admission \(maxQueue 2\)/);
      }
      expect(results.filter((r) => r.status === 'fulfilled').length).toBeGreaterThanOrEqual(2);  // the queued ones, and the first once admitted
      expect(e.stats().freePages).toBe(e.stats().totalPages);
    } finally {
      await e.close();
    }
  });

  it('when pages run out mid-decode the newest sequence is preempted and recomputed; outputs unchanged', async () => {
    // A pool of ~24 pages of 8 tokens for 4 sequences growing to 90 tokens each: they cannot all
    // fit at once, so some are preempted and prefilled again later.
    const pageBytes = 2 * 2 * 2 * 16 * 8 * 4 + 2 * 2 * 2 * 16 * 8 * 4;  // target + drafter K/V per page (f32)
    const e = await Engine.load({
      target: path.join(MODELS, 'qwen3-f32'), drafter: path.join(MODELS, 'qwen3-f32-dflash'), pageSize: 8, maxSeqLen: 100,
      maxSequences: 4, kvCacheMemory: 25 * pageBytes, adaptive: false,
    });
    try {
      const ps = prompts(4).map((p) => p.slice(0, 10));
      const solo: number[][] = [];
      for (const p of ps) solo.push((await e.generate(p, { maxTokens: 80 }).done()).ids);
      const together = await Promise.all(ps.map((p) => e.generate(p, { maxTokens: 80 }).done()));
      together.forEach((d, i) => expect(d.ids, `stream ${i}`).toEqual(solo[i]));
      expect(e.stats().preemptions).toBeGreaterThan(0);
      expect(e.stats().freePages).toBe(e.stats().totalPages);
    } finally {
      await e.close();
    }
  });

  it('a sequence that can never fit the pool is refused at once, naming the pages', async () => {
    const e = await Engine.load({ target: path.join(MODELS, 'qwen3-f32'), pageSize: 8, maxSeqLen: 200, maxSequences: 1, kvCacheMemory: 10 * 2 * 2 * 2 * 16 * 8 * 4 });
    try {
      await expect(e.generate(Array.from({ length: 50 }, (_, i) => i), { maxTokens: 100 }).done())
        .rejects.toThrow(/need \d+ KV pages, the pool has \d+ \(raise kvCacheMemory or lower maxTokens\)/);
    } finally {
      await e.close();
    }
  });

  it('an abort frees the pages at the next iteration', async () => {
    const e = await Engine.load({ target: path.join(MODELS, 'qwen3-f32'), maxSeqLen: 128, maxSequences: 2 });
    try {
      const ac = new AbortController();
      const s = e.generate([1, 2, 3], { maxTokens: 100, signal: ac.signal });
      let n = 0;
      s.on('token', () => { if (++n === 3) ac.abort(); });
      const d = await s.done();
      expect(d.reason).toBe('abort');
      expect(e.stats().freePages).toBe(e.stats().totalPages);
      expect(e.stats().runningSequences).toBe(0);
    } finally {
      await e.close();
    }
  });
});

describe('batch invariance applies where rows can differ', () => {
  it('one plain stream takes the single-row path; a batch or a drafter keeps the padded kernels', async () => {
    const target = path.join(MODELS, 'qwen3-f32'), drafter = path.join(MODELS, 'qwen3-f32-dflash');
    const reason = async (o: Record<string, unknown>) => {
      const e = await Engine.load({ target, maxSeqLen: 64, cacheDir: false, warmup: false, ...o });
      try {
        return e.stats().dtypeReason;
      } finally {
        e.dispose();
      }
    };
    expect(await reason({ maxSequences: 1 })).toContain('not batch-invariant');
    expect(await reason({ maxSequences: 2 })).not.toContain('not batch-invariant');
    expect(await reason({ maxSequences: 1, drafter })).not.toContain('not batch-invariant');
    expect(await reason({ maxSequences: 2, batchInvariant: false })).toContain('not batch-invariant');
  });
});
