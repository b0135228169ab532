// Runtime: compile and run real StableHLO on the CPU PJRT plugin, checking every number against
// values computed here in plain TypeScript; donation; buffers shared by two executables;
// bf16 round trips; live-object accounting.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Client, liveObjects } from '../lib/runtime';
import { settledLiveObjects } from './helpers/live-objects';

let client: Client;

beforeAll(async () => {
  client = await Client.open();
});
afterAll(() => client?.dispose());

const f32 = (dims: number[]) => `tensor<${dims.join('x')}xf32>`;

function randn(n: number, seed: number): Float32Array {
  // Deterministic LCG so failures reproduce.
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

describe('Client', () => {
  it('reports platform and devices', () => {
    expect(client.platformName.toLowerCase()).toBe('cpu');
    const devices = client.devices();
    expect(devices.length).toBeGreaterThan(0);
    expect(devices[0].addressable).toBe(true);
    expect(typeof devices[0].kind).toBe('string');
  });
});

describe('programs', () => {
  it('matmul via dot_general', async () => {
    const [m, k, n] = [3, 5, 4];
    const a = randn(m * k, 1), b = randn(k * n, 2);
    const exe = await client.compile(`
func.func public @main(%a: ${f32([m, k])}, %b: ${f32([k, n])}) -> ${f32([m, n])} {
  %0 = "stablehlo.dot_general"(%a, %b) {dot_dimension_numbers = #stablehlo.dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [0]>} : (${f32([m, k])}, ${f32([k, n])}) -> ${f32([m, n])}
  return %0 : ${f32([m, n])}
}`);
    const [out] = await exe.execute([await client.upload(a, 'f32', [m, k]), await client.upload(b, 'f32', [k, n])]);
    expect(out.dims).toEqual([m, n]);
    const got = (await out.toHost()) as Float32Array;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let want = 0;
        for (let t = 0; t < k; t++) want += a[i * k + t] * b[t * n + j];
        expect(got[i * n + j]).toBeCloseTo(want, 5);
      }
  });

  it('reduce-sum over rows', async () => {
    const x = randn(4 * 8, 3);
    const exe = await client.compile(`
func.func public @main(%x: ${f32([4, 8])}) -> ${f32([4])} {
  %z = stablehlo.constant dense<0.0> : tensor<f32>
  %0 = stablehlo.reduce(%x init: %z) applies stablehlo.add across dimensions = [1] : (${f32([4, 8])}, tensor<f32>) -> ${f32([4])}
  return %0 : ${f32([4])}
}`);
    const [out] = await exe.execute([await client.upload(x, 'f32', [4, 8])]);
    const got = (await out.toHost()) as Float32Array;
    for (let r = 0; r < 4; r++) {
      let want = 0;
      for (let c = 0; c < 8; c++) want += x[r * 8 + c];
      expect(got[r]).toBeCloseTo(want, 5);
    }
  });

  it('argmax over a row (two-operand reduce, first index on ties)', async () => {
    const x = Float32Array.from([0.5, 2, 2, -1, 0, /**/ -3, -2, -9, -2, -5, /**/ 7, 1, 7, 7, 0]);
    const exe = await client.compile(`
func.func public @main(%x: ${f32([3, 5])}) -> tensor<3xi32> {
  %iota = stablehlo.iota dim = 1 : tensor<3x5xi32>
  %ninf = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %zero = stablehlo.constant dense<0> : tensor<i32>
  %r:2 = stablehlo.reduce(%x init: %ninf), (%iota init: %zero) across dimensions = [1] : (${f32([3, 5])}, tensor<3x5xi32>, tensor<f32>, tensor<i32>) -> (tensor<3xf32>, tensor<3xi32>)
    reducer(%a: tensor<f32>, %c: tensor<f32>) (%b: tensor<i32>, %d: tensor<i32>) {
      %gt = stablehlo.compare GT, %a, %c, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
      %eq = stablehlo.compare EQ, %a, %c, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
      %lt = stablehlo.compare LT, %b, %d, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
      %tie = stablehlo.and %eq, %lt : tensor<i1>
      %take = stablehlo.or %gt, %tie : tensor<i1>
      %v = stablehlo.select %take, %a, %c : tensor<i1>, tensor<f32>
      %i = stablehlo.select %take, %b, %d : tensor<i1>, tensor<i32>
      stablehlo.return %v, %i : tensor<f32>, tensor<i32>
    }
  return %r#1 : tensor<3xi32>
}`);
    const [out] = await exe.execute([await client.upload(x, 'f32', [3, 5])]);
    expect(Array.from((await out.toHost()) as Int32Array)).toEqual([1, 1, 0]);
  });

  it('gather rows by index', async () => {
    const table = randn(6 * 3, 4);
    const idx = Int32Array.from([4, 0, 4, 2]);
    const exe = await client.compile(`
func.func public @main(%t: ${f32([6, 3])}, %i: tensor<4xi32>) -> ${f32([4, 3])} {
  %0 = "stablehlo.gather"(%t, %i) {dimension_numbers = #stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 1>, slice_sizes = array<i64: 1, 3>, indices_are_sorted = false} : (${f32([6, 3])}, tensor<4xi32>) -> ${f32([4, 3])}
  return %0 : ${f32([4, 3])}
}`);
    const [out] = await exe.execute([await client.upload(table, 'f32', [6, 3]), await client.upload(idx, 's32', [4])]);
    const got = (await out.toHost()) as Float32Array;
    idx.forEach((r, k) => {
      for (let c = 0; c < 3; c++) expect(got[k * 3 + c]).toBe(table[r * 3 + c]);
    });
  });

  it('dynamic_update_slice at a runtime offset', async () => {
    const base = new Float32Array(10).fill(1);
    const upd = Float32Array.from([7, 8, 9]);
    const exe = await client.compile(`
func.func public @main(%b: ${f32([10])}, %u: ${f32([3])}, %o: tensor<i32>) -> ${f32([10])} {
  %0 = stablehlo.dynamic_update_slice %b, %u, %o : (${f32([10])}, ${f32([3])}, tensor<i32>) -> ${f32([10])}
  return %0 : ${f32([10])}
}`);
    const [out] = await exe.execute([
      await client.upload(base, 'f32', [10]), await client.upload(upd, 'f32', [3]), await client.upload(Int32Array.from([4]), 's32', []),
    ]);
    expect(Array.from((await out.toHost()) as Float32Array)).toEqual([1, 1, 1, 1, 7, 8, 9, 1, 1, 1]);
  });

  it('bf16 round trip through a convert', async () => {
    // bf16 bits of 1.5, -2.25, 3.140625, 0: exactly representable, so the f32 values are exact.
    const bits = Uint16Array.from([0x3fc0, 0xc010, 0x4049, 0x0000]);
    const exe = await client.compile(`
func.func public @main(%x: tensor<4xbf16>) -> (tensor<4xf32>, tensor<4xbf16>) {
  %0 = stablehlo.convert %x : (tensor<4xbf16>) -> tensor<4xf32>
  %1 = stablehlo.add %0, %0 : tensor<4xf32>
  %2 = stablehlo.convert %1 : (tensor<4xf32>) -> tensor<4xbf16>
  return %0, %2 : tensor<4xf32>, tensor<4xbf16>
}`);
    const [asF32, doubled] = await exe.execute([await client.upload(bits, 'bf16', [4])]);
    expect(Array.from((await asF32.toHost()) as Float32Array)).toEqual([1.5, -2.25, 3.140625, 0]);
    expect(doubled.dtype).toBe('bf16');
    expect(Array.from((await doubled.toHost()) as Uint16Array)).toEqual([0x4040, 0xc090, 0x40c9, 0x0000]);
  });
});

describe('donation and sharing', () => {
  const addOne = `
func.func public @main(%x: ${f32([8])} {tf.aliasing_output = 0 : i32}) -> ${f32([8])} {
  %one = stablehlo.constant dense<1.0> : ${f32([8])}
  %0 = stablehlo.add %x, %one : ${f32([8])}
  return %0 : ${f32([8])}
}`;

  it('a donated input cannot be used again; a kept one can', async () => {
    const exe = await client.compile(addOne);
    const x = await client.upload(new Float32Array(8).fill(2), 'f32', [8]);
    const [y] = await exe.execute([x]);
    expect(Array.from((await y.toHost()) as Float32Array)).toEqual(new Array(8).fill(3));
    expect(x.disposed).toBe(true);
    await expect(x.toHost()).rejects.toThrow(/donated|disposed/);
    const [z] = await exe.execute([y], { keep: [0] });
    expect(Array.from((await z.toHost()) as Float32Array)).toEqual(new Array(8).fill(4));
    expect(Array.from((await y.toHost()) as Float32Array)).toEqual(new Array(8).fill(3));
  });

  it('two executables share one device buffer', async () => {
    const w = randn(16, 9);
    const shared = await client.upload(w, 'f32', [16]);
    const double = await client.compile(`
func.func public @main(%x: ${f32([16])}) -> ${f32([16])} {
  %0 = stablehlo.add %x, %x : ${f32([16])}
  return %0 : ${f32([16])}
}`);
    const square = await client.compile(`
func.func public @main(%x: ${f32([16])}) -> ${f32([16])} {
  %0 = stablehlo.multiply %x, %x : ${f32([16])}
  return %0 : ${f32([16])}
}`);
    const [d] = await double.execute([shared]);
    const [s] = await square.execute([shared]);
    const dv = (await d.toHost()) as Float32Array, sv = (await s.toHost()) as Float32Array;
    w.forEach((v, i) => {
      expect(dv[i]).toBe(Math.fround(v + v));
      expect(sv[i]).toBe(Math.fround(v * v));
    });
  });

  it('serialize and deserialize an executable', async () => {
    const exe = await client.compile(addOne);
    const bytes = await exe.serialize();
    expect(bytes.byteLength).toBeGreaterThan(0);
    const again = await client.deserialize(bytes);
    const [y] = await again.execute([await client.upload(new Float32Array(8).fill(5), 'f32', [8])]);
    expect(Array.from((await y.toHost()) as Float32Array)).toEqual(new Array(8).fill(6));
  });
});

describe('lifetime', () => {
  it('dispose releases native objects and live counts return to baseline', async () => {
    const before = await settledLiveObjects();
    const exe = await client.compile(`
func.func public @main(%x: ${f32([2])}) -> ${f32([2])} {
  return %x : ${f32([2])}
}`);
    const bufs = [];
    for (let i = 0; i < 5; i++) bufs.push(await client.upload(new Float32Array(2), 'f32', [2]));
    const outs = await exe.execute([bufs[0]]);
    const mid = liveObjects();
    expect(mid.buffers).toBe(before.buffers + 6);
    expect(mid.executables).toBe(before.executables + 1);
    for (const b of [...bufs, ...outs]) b.dispose();
    exe.dispose();
    const after = liveObjects();
    expect(after.buffers).toBe(before.buffers);
    expect(after.executables).toBe(before.executables);
  });

  it('the event loop keeps running while a compile is in flight', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    // A program large enough that compiling it takes a while on XLA:CPU.
    const n = 256;
    let body = '';
    let prev = '%x';
    for (let i = 0; i < 60; i++) {
      body += `  %d${i} = "stablehlo.dot_general"(${prev}, %x) {dot_dimension_numbers = #stablehlo.dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [0]>} : (${f32([n, n])}, ${f32([n, n])}) -> ${f32([n, n])}\n`;
      body += `  %t${i} = stablehlo.tanh %d${i} : ${f32([n, n])}\n`;
      prev = `%t${i}`;
    }
    const exe = await client.compile(`func.func public @main(%x: ${f32([n, n])}) -> ${f32([n, n])} {\n${body}  return ${prev} : ${f32([n, n])}\n}`);
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
    exe.dispose();
  });
});
