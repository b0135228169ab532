// The matmul facts the dtype policy and the batch-invariant numerics rest on, measured on this
// machine's PJRT plugin: (1) weight-streaming throughput of y = x W^T for f32 weights, bf16
// weights, and bf16 weights widened to f32 inside the graph (what the first engine did), at
// 1..16 rows; (2) for which row counts a row's result is bit-for-bit independent of how many
// rows share the call (plain and batched dots, f32 and bf16; the weight as HF stores it and
// transposed at load); (3) for which key-slot counts the attention scores are the same.
//   npm run bench:dots -- [--layers 12] [--rows 1,2,3,4,16]
import { Client, DeviceBuffer } from '../lib/runtime';
import { arg, machine, publish, run } from './common';

const OUT = 3072, IN = 1024;  // a Qwen3-0.6B MLP projection

type Variant = 'f32' | 'bf16' | 'widen';

function weightStream(variant: Variant, rows: number, layers: number): string {
  const wt = variant === 'f32' ? 'f32' : 'bf16', xt = variant === 'bf16' ? 'bf16' : 'f32';
  const ins = [`%x: tensor<${rows}x${IN}x${xt}>`, ...Array.from({ length: layers }, (_, i) => `%w${i}: tensor<${OUT}x${IN}x${wt}>`)];
  const body: string[] = [];
  let acc = '';
  for (let i = 0; i < layers; i++) {
    let w = `%w${i}`;
    if (variant === 'widen') {
      body.push(`%c${i} = "stablehlo.convert"(%w${i}) : (tensor<${OUT}x${IN}xbf16>) -> tensor<${OUT}x${IN}xf32>`);
      w = `%c${i}`;
    }
    const wty = variant === 'bf16' ? 'bf16' : 'f32';
    body.push(`%d${i} = "stablehlo.dot_general"(%x, ${w}) {dot_dimension_numbers = #stablehlo.dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1]>} : (tensor<${rows}x${IN}x${xt}>, tensor<${OUT}x${IN}x${wty}>) -> tensor<${rows}x${OUT}xf32>`);
    if (acc) body.push(`%a${i} = "stablehlo.add"(${acc}, %d${i}) : (tensor<${rows}x${OUT}xf32>, tensor<${rows}x${OUT}xf32>) -> tensor<${rows}x${OUT}xf32>`);
    acc = acc ? `%a${i}` : `%d${i}`;
  }
  return `module @m { func.func public @main(${ins.join(', ')}) -> tensor<${rows}x${OUT}xf32> {\n${body.join('\n')}\n"func.return"(${acc}) : (tensor<${rows}x${OUT}xf32>) -> () } }`;
}

function bf16(f: Float32Array): Uint16Array {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length), o = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) o[i] = (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16;
  return o;
}

function values(n: number, seed: number): Float32Array {
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = Math.sin(i * 0.37 + seed) * 0.05;
  return f;
}

async function median(c: Client, text: string, args: DeviceBuffer[], reps = 9): Promise<number> {
  const exe = await c.compile(text);
  const t: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const t0 = performance.now();
    const out = await exe.execute(args, { keep: args.map((_, i) => i) });
    await out[0].toHost();
    if (r > 0) t.push(performance.now() - t0);
    out.forEach((b) => b.dispose());
  }
  exe.dispose();
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)] / 1000;
}

// `keys[i]` grouped by bit-identical `results[i]`, as "{a, b} {c}".
function identicalClasses(keys: number[], results: Float32Array[]): string {
  const classes: number[][] = [];
  results.forEach((r, i) => {
    const same = classes.find((cl) => results[keys.indexOf(cl[0])].every((v, j) => v === r[j]));
    if (same) same.push(keys[i]);
    else classes.push([keys[i]]);
  });
  return classes.map((cl) => `{${cl.join(', ')}}`).join(' ');
}

// Row 0 of a (batched) dot for each row count, compared bit for bit with the others. `layout`:
// the weight as HF stores it, [out, in] (x . W^T), or transposed at load, [in, out] (x . W).
async function invariance(c: Client, dt: 'f32' | 'bf16', batched: boolean, rowCounts: number[], layout: 'out,in' | 'in,out' = 'out,in'): Promise<string> {
  const B = batched ? 4 : 1, K = 256, N = 768;
  const wShape = layout === 'out,in' ? [N, K] : [K, N];
  const w = await c.upload(dt === 'f32' ? values(B * N * K, 1) : bf16(values(B * N * K, 1)), dt, batched ? [B, ...wShape] : wShape);
  const results: Float32Array[] = [];
  const wc = layout === 'out,in' ? 1 : 0;  // the weight's contracting dimension
  for (const M of rowCounts) {
    const lhs = batched ? `${B}x${M}x${K}` : `${M}x${K}`, rhs = (batched ? `${B}x` : '') + wShape.join('x'), res = batched ? `${B}x${M}x${N}` : `${M}x${N}`;
    const dims = batched
      ? `lhs_batching_dimensions = [0], rhs_batching_dimensions = [0], lhs_contracting_dimensions = [2], rhs_contracting_dimensions = [${wc + 1}]`
      : `lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [${wc}]`;
    const exe = await c.compile(`module @m { func.func public @main(%x: tensor<${lhs}x${dt}>, %w: tensor<${rhs}x${dt}>) -> tensor<${res}xf32> {
      %d = "stablehlo.dot_general"(%x, %w) {dot_dimension_numbers = #stablehlo.dot<${dims}>} : (tensor<${lhs}x${dt}>, tensor<${rhs}x${dt}>) -> tensor<${res}xf32>
      "func.return"(%d) : (tensor<${res}xf32>) -> () } }`);
    // Row 0 of every batch holds the same values whatever M is; the other rows differ.
    const x = new Float32Array(B * M * K);
    for (let b = 0; b < B; b++)
      for (let r = 0; r < M; r++) for (let k = 0; k < K; k++) x[(b * M + r) * K + k] = r === 0 ? Math.cos(b * 7 + k * 1.3) : Math.sin(b * 3 + r * 11 + k);
    const xb = await c.upload(dt === 'f32' ? x : bf16(x), dt, batched ? [B, M, K] : [M, K]);
    const [o] = await exe.execute([xb, w], { keep: [0, 1] });
    const all = new Float32Array(((await o.toHost()) as Float32Array).buffer);
    const row0 = new Float32Array(B * N);
    for (let b = 0; b < B; b++) row0.set(all.subarray(b * M * N, b * M * N + N), b * N);
    results.push(row0);
    o.dispose(); xb.dispose(); exe.dispose();
  }
  w.dispose();
  return identicalClasses(rowCounts, results);  // row counts whose row 0 is bit-identical
}

// The first 32 scores of q . K^T per kv head for each key-slot count T, compared bit for bit.
async function keySlots(c: Client, dt: 'f32' | 'bf16', slots: number[]): Promise<string> {
  const H = 2, M = 4, D = 64, T0 = 32;
  const results: Float32Array[] = [];
  for (const T of slots) {
    const exe = await c.compile(`module @m { func.func public @main(%q: tensor<${H}x${M}x${D}x${dt}>, %k: tensor<${H}x${D}x${T}x${dt}>) -> tensor<${H}x${M}x${T}xf32> {
      %d = "stablehlo.dot_general"(%q, %k) {dot_dimension_numbers = #stablehlo.dot<lhs_batching_dimensions = [0], rhs_batching_dimensions = [0], lhs_contracting_dimensions = [2], rhs_contracting_dimensions = [1]>} : (tensor<${H}x${M}x${D}x${dt}>, tensor<${H}x${D}x${T}x${dt}>) -> tensor<${H}x${M}x${T}xf32>
      "func.return"(%d) : (tensor<${H}x${M}x${T}xf32>) -> () } }`);
    // K^T column t is the same in every call (a function of (h, d, t) only).
    const k = new Float32Array(H * D * T);
    for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) for (let t = 0; t < T; t++) k[(h * D + d) * T + t] = Math.sin(h * 5 + d * 0.7 + t * 1.3);
    const q = values(H * M * D, 4);
    const qb = await c.upload(dt === 'f32' ? q : bf16(q), dt, [H, M, D]), kb = await c.upload(dt === 'f32' ? k : bf16(k), dt, [H, D, T]);
    const [o] = await exe.execute([qb, kb], { keep: [0, 1] });
    const all = new Float32Array(((await o.toHost()) as Float32Array).buffer);
    const first = new Float32Array(H * M * T0);
    for (let r = 0; r < H * M; r++) first.set(all.subarray(r * T, r * T + T0), r * T0);
    results.push(first);
    o.dispose(); qb.dispose(); kb.dispose(); exe.dispose();
  }
  return identicalClasses(slots, results);
}

async function main(): Promise<void> {
  const layers = Number(arg('layers', '12'));
  const rowList = arg('rows', '1,2,3,4,16').split(',').map(Number);
  const c = await Client.open();
  const wF32: DeviceBuffer[] = [], wBf16: DeviceBuffer[] = [];
  for (let i = 0; i < layers; i++) {
    const v = values(OUT * IN, i);
    wF32.push(await c.upload(v, 'f32', [OUT, IN]));
    wBf16.push(await c.upload(bf16(v), 'bf16', [OUT, IN]));
  }
  const lines = [
    `# Matmul variants on this plugin (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(c),
    `- y = x W^T with ${layers} weights of ${OUT}x${IN} (a Qwen3-0.6B MLP projection) in one program; median of 9 executions; ` +
      'GB/s = weight bytes / time (what a memory-bound decode streams)',
    '',
    '| rows | f32 weights | bf16 weights (bf16 dot, f32 accumulation) | bf16 widened to f32 in the graph |',
    '|---|---|---|---|',
  ];
  for (const rows of rowList) {
    const cells: string[] = [];
    for (const v of ['f32', 'bf16', 'widen'] as Variant[]) {
      const x = await c.upload(v === 'bf16' ? bf16(values(rows * IN, 9)) : values(rows * IN, 9), v === 'bf16' ? 'bf16' : 'f32', [rows, IN]);
      const s = await median(c, weightStream(v, rows, layers), [x, ...(v === 'f32' ? wF32 : wBf16)]);
      const bytes = layers * OUT * IN * (v === 'f32' ? 4 : 2);
      cells.push(`${(s * 1000).toFixed(2)} ms (${(bytes / s / 1e9).toFixed(1)} GB/s)`);
      x.dispose();
    }
    lines.push(`| ${rows} | ${cells.join(' | ')} |`);
  }
  const counts = [1, 2, 3, 4, 8, 16, 17, 64, 128, 512];
  lines.push('', '## Batch invariance: row counts that give row 0 bit for bit the same result', '',
    `Row 0 holds the same values in every call; each set below is one class of identical results (counts ${counts.join(', ')}).`, '',
    '| dot | f32 | bf16 |', '|---|---|---|',
    `| plain (M x 256) . (768 x 256)^T | ${await invariance(c, 'f32', false, counts)} | ${await invariance(c, 'bf16', false, counts)} |`,
    `| batched (4 x M x 256) . (4 x 768 x 256)^T | ${await invariance(c, 'f32', true, counts)} | ${await invariance(c, 'bf16', true, counts)} |`,
    `| plain, weight stored [in, out]: (M x 256) . (256 x 768) | ${await invariance(c, 'f32', false, counts, 'in,out')} | ${await invariance(c, 'bf16', false, counts, 'in,out')} |`);
  const slots = [32, 64, 128, 256, 384, 512, 768, 1024, 2048];
  lines.push('', '## Attention scores: key-slot counts that give the same scores', '',
    `q (2 x 4 x 64) . K^T (2 x 64 x T), the first 32 slots compared (T = ${slots.join(', ')}); the engine scores keys 256 at a time ` +
    '(models/layers.h kScoreChunk) because of this.', '',
    '| dot | f32 | bf16 |', '|---|---|---|',
    `| scores over T key slots | ${await keySlots(c, 'f32', slots)} | ${await keySlots(c, 'bf16', slots)} |`);
  wF32.concat(wBf16).forEach((w) => w.dispose());
  const platform = c.platformName;
  c.dispose();
  publish(lines, `dots-${platform}.md`);
}

run(main);
