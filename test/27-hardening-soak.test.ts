// Issue #10's soak, bounded, against the native scheduler: a thousand short generations in
// concurrent waves (plain and speculative, greedy and sampled, stop strings, aborts before and
// during a stream, for-await breaks, prompts the scheduler refuses), then the engine's counters and
// the process's native objects must be back where they were: no sequence, page, buffer, executable
// or JS-side stream left behind. Then an engine disposed with streams in flight: every stream ends
// with an AbortError and every native object (engine, client, buffers, executables) is released.
// Then 20 load/close cycles in a child process: the process's RSS must stop growing.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { liveObjects } from '../lib/runtime';
import { rng } from './helpers/tiny-model';
import { DIST, MODELS } from './helpers/checkpoint-edit';
import { settledLiveObjects } from './helpers/live-objects';
import { spawnAsync } from './helpers/spawn-async';

const SCRATCH = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-soak-'));
afterAll(() => fs.rmSync(SCRATCH, { recursive: true, force: true }));
const LOAD = {
  target: path.join(MODELS, 'qwen3-f32'), drafter: path.join(MODELS, 'qwen3-f32-dflash'),
  cacheDir: SCRATCH, maxSeqLen: 48, maxSequences: 2, maxQueue: 64,
};
const WAVES = 167;
const PER_WAVE = 6;  // three times maxSequences: admission queues most of each wave

const STOP_PROMPT = [3, 14, 15, 92, 65, 35];
let stop = '';  // two characters from the middle of STOP_PROMPT's greedy text: a stop string that occurs

/** One generation of kind `k` (0..7), settled: how it ended. */
async function one(engine: Engine, k: number, draw: () => number): Promise<string> {
  const prompt = [3 + (k % 5), 14, 15, 92, 65].slice(0, 2 + (k % 4));
  const maxTokens = 1 + Math.floor(Math.abs(draw()) * 6);
  const sampled = k % 2 === 1 ? { temperature: 0.8, seed: k } : {};
  try {
    switch (k) {
      case 0: case 1: return (await engine.generate(prompt, { maxTokens, ...sampled }).done()).reason;
      case 2: return (await engine.generate(prompt, { maxTokens, speculative: false, ...sampled }).done()).reason;
      case 3: {  // aborted after its first token
        const ac = new AbortController();
        const s = engine.generate(prompt, { maxTokens: 40, signal: ac.signal, ...sampled });
        s.once('token', () => ac.abort());
        return (await s.done()).reason;
      }
      case 4: {  // aborted before it starts
        const ac = new AbortController();
        ac.abort();
        return (await engine.generate(prompt, { maxTokens, signal: ac.signal }).done()).reason;
      }
      case 5: {  // the consumer leaves a for-await loop
        const s = engine.generate(prompt, { maxTokens: 40, ...sampled });
        for await (const _ of s) break;
        return (await s.done()).reason;
      }
      case 6: return (await engine.generate(STOP_PROMPT, { maxTokens: 30, stop }).done()).reason;
      default: return (await engine.generate([3, 1 << 20], { maxTokens }).done()).reason;  // outside the vocabulary
    }
  } catch (e) {
    return (e as Error).name;
  }
}

/** Every counter that must return to its value at rest. Executables are counted apart from the
 *  programs compiled, buffers apart from the all-ones token masks: a new shape bucket (rows,
 *  block) legitimately adds one of each, and nothing else may. */
async function atRest(engine: Engine) {
  const { executables, buffers, ...objects } = await settledLiveObjects();
  const s = engine.stats();
  return {
    running: s.runningSequences, queued: s.queuedSequences, freePages: s.freePages, totalPages: s.totalPages,
    streams: (engine as unknown as { live: Map<number, unknown> }).live.size, objects,
    executablesBeyondPrograms: executables - s.compiles - s.diskCacheHits, buffersBeyondMasks: buffers - s.programs.maskBuffers,
  };
}

describe('soak', () => {
  it(`${WAVES} waves of ${PER_WAVE} mixed generations leave the engine and the process as they found them`, async () => {
    const engine = await Engine.load(LOAD);
    try {
      const full = await engine.generate(STOP_PROMPT, { maxTokens: 30 }).done();
      stop = full.text.slice(full.text.length >> 1, (full.text.length >> 1) + 2);
      const draw = rng(29);
      const wave = (w: number) => Promise.all(Array.from({ length: PER_WAVE }, (_, i) => one(engine, (w + i) % 8, draw)));
      await wave(0);  // compiles what the mix needs, so the rest compiles nothing
      await wave(1);
      const before = await atRest(engine);
      expect(before).toMatchObject({ running: 0, queued: 0, streams: 0, freePages: before.totalPages });

      const seen = new Map<string, number>();
      for (let w = 2; w < WAVES; w++) for (const r of await wave(w)) seen.set(r, (seen.get(r) ?? 0) + 1);

      // Every way of ending occurred (so the soak exercised them), and nothing is left over.
      expect([...seen.keys()].filter((r) => !['AbortError', 'RangeError', 'abort', 'maxTokens', 'stop', 'eos'].includes(r))).toEqual([]);
      for (const r of ['AbortError', 'RangeError', 'abort', 'maxTokens', 'stop']) expect(seen.get(r), r).toBeGreaterThan(10);
      expect(await atRest(engine)).toEqual(before);
    } finally {
      await engine.close();
    }
  });

  it('an engine disposed with streams in flight ends them with AbortError and releases every native object', async () => {
    const baseline = await settledLiveObjects();
    const engine = await Engine.load(LOAD);
    expect(liveObjects().engines).toBe(baseline.engines + 1);
    const streams = Array.from({ length: 6 }, (_, i) => engine.generate([3, 14, 15 + i], { maxTokens: 40 }));
    const ended = Promise.all(streams.map((s) => s.done().then((d) => d.reason, (e: Error) => e.name)));
    await new Promise<void>((resolve) => streams[0].once('token', () => resolve()));
    engine.dispose();
    expect(await ended).toEqual(Array(6).fill('AbortError'));
    expect(() => engine.generate([3], { maxTokens: 1 })).toThrow(/^Engine is disposed$/);
    await engine.close();
    expect(await settledLiveObjects()).toEqual(baseline);
  });

  it('20 load/close cycles do not grow the process (RSS after cycle 5 is the plateau)', async () => {
    // Programs come from the disk cache (deserialized), the path whose freed memory glibc's
    // arenas kept before the addon trimmed them: 210 -> 285 -> 389 MB over 30 cycles here
    // (~6 MB a cycle: 90 MB over the 15 cycles after the plateau), +3 MB after cycle 5 since.
    const cache = fs.mkdtempSync(path.join(SCRATCH, 'cycles-'));
    const r = await spawnAsync(process.execPath, ['--expose-gc', path.join(__dirname, 'helpers', 'load-cycles.js'), DIST, LOAD.target, LOAD.drafter, cache, '20'],
      { timeout: 240_000 });
    expect(r.status, r.stderr).toBe(0);
    const cycles = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { cycle: number; rss: number; live: Record<string, number> });
    expect(cycles).toHaveLength(20);
    for (const c of cycles) expect(c.live, `cycle ${c.cycle}`).toEqual({ clients: 0, buffers: 0, executables: 0, engines: 0 });
    const plateau = cycles[4].rss;
    const peak = Math.max(...cycles.slice(5).map((c) => c.rss));
    expect(peak - plateau, `RSS per cycle: ${cycles.map((c) => c.rss).join(' ')}`).toBeLessThan(32);
  });
});
