// Real scale: a Qwen3-0.6B-shaped bf16 checkpoint (1.19 GB of random weights, written here once
// and never committed) loads with its weights kept 16-bit, without a second host copy of the
// model, and generates; peak resident memory stays within 1.2x of what the model needs (weights +
// KV pool) on top of the runtime's own footprint (tokenizer + PJRT plugin/client, measured in a
// separate process); a second start loads its compiled programs from the disk cache; split over 2
// devices (tensor parallelism) each device receives half of the split weights, straight from the
// mapped file, and loading stays within the same bound. The only heavy test file: its data is
// built once for all its cases.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeRandomShapeAsync } from './helpers/random-shape';
import { spawnAsync } from './helpers/spawn-async';

const CHILD = path.join(__dirname, 'helpers', 'measure-rss.js');
let dir: string, cacheDir: string, fileBytes: number;

async function child(args: string[]): Promise<Record<string, any>> {
  const r = await spawnAsync(process.execPath, [CHILD, ...args], { timeout: 600_000, env: process.env });
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-0.6b-'));
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-0.6b-cache-'));
  fileBytes = (await makeRandomShapeAsync('qwen3-0.6b', dir)).tensorBytes;
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(cacheDir, { recursive: true, force: true });
});

describe('Qwen3-0.6B shape, bf16', () => {
  let first: Record<string, any>, baseline: number;

  it('loads 16-bit weights as 16-bit within 1.2x of weights + KV pool in memory, and generates within 1.3x', async () => {
    baseline = (await child(['baseline', dir])).baseline.peak;
    first = await child(['engine', dir, cacheDir]);
    expect(first.dtype).toBe('bf16');
    expect(first.weightBytes).toBe(fileBytes);  // on the device exactly as in the file: no widening
    expect(first.tokens).toBe(8);
    const model = first.weightBytes + first.kvCacheBytes;
    const mb = (x: number) => `${(x / 1e6).toFixed(0)} MB`;
    const report = `baseline ${mb(baseline)}, weights ${mb(first.weightBytes)}, KV ${mb(first.kvCacheBytes)}, ` +
      `peak after load ${mb(first.loaded.peak)}, peak after generating ${mb(first.generated.peak)}`;
    console.log(report);
    // Loading: weights go from the file to the device tensor by tensor (no second full copy).
    expect(first.loaded.peak - baseline, report).toBeLessThanOrEqual(1.2 * model);
    // Generating, compiles included. The bound counts the compiled programs too: on XLA:CPU
    // their runtime state (YNNPACK dot fusions, per program and growing with the layer count) adds
    // 150-250 MB here that PJRT does not report (measured: +96 MB at 4 layers, +166 at 14, +241 at
    // 28; docs/ARCHITECTURE.md, memory). Programs whose attention loops over key chunks (one
    // while loop per layer, issue 22) keep 50-80 MB more of it than the bucketed ones did (measured
    // side by side: resident after generating 1,825 vs 1,771 MB, from the disk cache 2,008 vs
    // 1,930), which took the peak from 1.26-1.29x to 1.29-1.33x; so generating is bounded at 1.4x:
    // a second copy of the weights or their widening to f32 (+1.19 GB, +0.9x) still fails it by far.
    expect(first.generated.peak - baseline, report).toBeLessThanOrEqual(1.4 * model);
  });

  it('over 2 devices: each holds its half of every split weight, loaded within 1.2x of what the devices hold', async () => {
    const two = await child(['mesh', dir, '2']);
    const held = two.devices.map((d: { weightBytes: number }) => d.weightBytes);
    // Everything but the norms (a few hundred kB) is split: each device ~ half the checkpoint.
    for (const b of held) expect(b / fileBytes).toBeGreaterThan(0.5), expect(b / fileBytes).toBeLessThan(0.501);
    const onDevices = held.reduce((a: number, b: number) => a + b, 0) + two.kvCacheBytes;  // the CPU devices' memory is this process's
    const mb = (x: number) => `${(x / 1e6).toFixed(0)} MB`;
    const report = `baseline ${mb(baseline)}, on the devices ${mb(onDevices)}, peak after load ${mb(two.loaded.peak)}`;
    console.log(report);
    expect(two.loaded.peak - baseline, report).toBeLessThanOrEqual(1.2 * onDevices);
  });

  it('a second start loads its programs from the disk cache', async () => {
    const second = await child(['engine', dir, cacheDir]);
    expect(first.compiles).toBeGreaterThan(0);
    expect(second.compiles).toBe(0);
    expect(second.diskCacheHits).toBe(first.compiles);
    console.log(`first generation incl. compile ${first.firstGenerationSeconds.toFixed(1)} s, from the disk cache ${second.firstGenerationSeconds.toFixed(1)} s`);
    expect(second.firstGenerationSeconds).toBeLessThan(first.firstGenerationSeconds);
  });
});
