// The device kit (bench/device): the random checkpoint writer it uses on GPU hosts
// (tools/shapes/make_random.py), and the whole kit end to end on the CPU plugin in --quick mode —
// pack-node.sh packs this machine's Node, dist/ and runtime node_modules into a carry, run.sh
// unpacks them, builds the addon with CMake from the tree, and runs the plugin check, a smoke
// generation and the benchmarks, writing their tables. Needs dist/ (npm test runs tsc first).
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { loadTokenizer } from '../lib/tokenizer';
import { tmpDir } from './helpers/tiny-model';

const ROOT = path.join(__dirname, '..');
const PY = ['.venv/bin/python', 'python3'].find((p) => spawnSync(p, ['-c', 'import numpy'], { cwd: ROOT }).status === 0);
const work = tmpDir('dflash-devkit-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function makeRandom(args: string[]) {
  expect(PY, 'a Python with numpy (./.venv or python3)').toBeTruthy();
  const r = spawnSync(PY!, ['tools/shapes/make_random.py', ...args], { cwd: ROOT, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

/** The safetensors header of a file: {name: {dtype, shape, data_offsets}}, and where data begins. */
function header(file: string): { tensors: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>; start: number } {
  const fd = fs.openSync(file, 'r');
  const len = Buffer.alloc(8);
  fs.readSync(fd, len, 0, 8, 0);
  const n = Number(len.readBigUInt64LE());
  const json = Buffer.alloc(n);
  fs.readSync(fd, json, 0, n, 8);
  fs.closeSync(fd);
  const { __metadata__: _, ...tensors } = JSON.parse(json.toString('utf8'));
  return { tensors, start: 8 + n };
}

describe('tools/shapes/make_random.py', () => {
  it('knows the published shapes: Qwen3-0.6B and Qwen3-4B parameter counts, the 4B DFlash drafter', () => {
    const shapes = Object.fromEntries(makeRandom(['--list']).trim().split('\n').map((l) => {
      const s = JSON.parse(l);
      return [s.shape, s];
    }));
    // Qwen3 model cards: 0.6B (0.44B without embeddings), 4.0B (3.6B without embeddings).
    expect(shapes['qwen3-0.6b'].target_params / 1e9).toBeCloseTo(0.596, 3);
    expect((shapes['qwen3-0.6b'].target_params - 151936 * 1024) / 1e9).toBeCloseTo(0.44, 2);
    expect(shapes['qwen3-4b'].target_params / 1e9).toBeCloseTo(4.022, 3);
    expect((shapes['qwen3-4b'].target_params - 151936 * 2560) / 1e9).toBeCloseTo(3.63, 2);
    expect(shapes['qwen3-4b'].drafter).toEqual({ layers: 5, target_layer_ids: [1, 9, 17, 25, 33], block_size: 16, mask_token_id: 151669 });
  });

  it('streams a bf16 checkpoint the engine reads: contiguous tensors, norms 1, small random weights, a byte tokenizer', async () => {
    const target = path.join(work, 'mini'), drafter = path.join(work, 'mini-dflash');
    makeRandom(['--shape', 'mini', '--out', target, '--drafter', drafter]);
    const file = path.join(target, 'model.safetensors');
    const { tensors, start } = header(file);
    const entries = Object.entries(tensors).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
    let end = 0;
    for (const [name, t] of entries) {
      expect(t.dtype, name).toBe('BF16');
      expect(t.data_offsets[0], name).toBe(end);
      end = t.data_offsets[1];
      expect(end - t.data_offsets[0], name).toBe(2 * t.shape.reduce((a, b) => a * b, 1));
    }
    expect(start % 8).toBe(0);
    expect(fs.statSync(file).size).toBe(start + end);
    const bytes = fs.readFileSync(file);
    const words = (name: string) => {
      const [a, b] = tensors[name].data_offsets;
      return new Uint16Array(bytes.buffer.slice(bytes.byteOffset + start + a, bytes.byteOffset + start + b));
    };
    expect(new Set(words('model.norm.weight'))).toEqual(new Set([0x3f80]));
    const w = words('model.layers.0.mlp.up_proj.weight');
    const values = Array.from(w, (u) => new Float32Array(new Uint32Array([u << 16]).buffer)[0]);
    const mags = values.map(Math.abs);
    expect(mags.reduce((a, b) => Math.min(a, b))).toBeGreaterThanOrEqual(2 ** -9);
    expect(mags.reduce((a, b) => Math.max(a, b))).toBeLessThan(2 ** -5);
    const negative = values.filter((v) => v < 0).length / values.length;
    expect(negative).toBeGreaterThan(0.45);
    expect(negative).toBeLessThan(0.55);

    const cfg = JSON.parse(fs.readFileSync(path.join(target, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ model_type: 'qwen3', hidden_size: 256, num_hidden_layers: 4, vocab_size: 4096, tie_word_embeddings: true });
    const dcfg = JSON.parse(fs.readFileSync(path.join(drafter, 'config.json'), 'utf8'));
    expect(dcfg.dflash_config).toEqual({ mask_token_id: 4095, target_layer_ids: [1, 2] });
    expect(header(path.join(drafter, 'model.safetensors')).tensors['fc.weight'].shape).toEqual([256, 512]);

    const tok = await loadTokenizer(target);
    const ids = tok.encode('def f(x):\n  return x ü');
    expect(Math.max(...ids)).toBeLessThan(256);
    expect(tok.decode(ids)).toBe('def f(x):\n  return x ü');
  });
});

describe('bench/device: pack-node.sh + run.sh --cpu --quick', () => {
  const carry = path.join(work, 'carry'), kit = path.join(work, 'kit'), results = path.join(work, 'results'), out = path.join(work, 'out');
  // Asynchronous: a minutes-long spawnSync would stall the vitest worker's own messages.
  const run = (script: string, args: string[]) => new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('bash', [path.join('bench', 'device', script), ...args], { cwd: ROOT, timeout: 900_000 });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });

  // Two halves on one kit (each stage can run alone: run.sh --stage), each with the suite's time
  // budget: the build and its checks, then the benchmarks on what it built.
  it('packs a carry, builds its own addon from it and checks it (stages build, check)', async () => {
    const pack = await run('pack-node.sh', ['--fast', '--no-build', '--carry', carry]);
    expect(pack.status, pack.stderr).toBe(0);
    expect(pack.stderr).toMatch(/carry total: [\d.]+ MiB/);
    for (const f of ['node.xz', 'runtime.tar.xz', 'manifest.env']) expect(fs.existsSync(path.join(carry, f)), f).toBe(true);

    const r = await run('run.sh', ['--cpu', '--quick', '--stage', 'build,check', '--carry', carry, '--kit-dir', kit, '--results', results, '--copy-to', out]);
    const log = `${r.stdout}\n${r.stderr}`;
    expect(r.status, log.slice(-4000)).toBe(0);
    // The kit ran its own Node and its own CMake-built addon, not this process's.
    expect(log).toContain(`node ${process.version} at ${path.join(kit, 'bin', 'node')}`);
    expect(fs.existsSync(path.join(kit, 'build', 'Release', 'dflash.node'))).toBe(true);
    expect(log).toMatch(/PASS matmul/);
    expect(log).toMatch(/smoke: identical outputs; 48 tokens/);
    const summary = fs.readFileSync(path.join(results, 'devkit-cpu.md'), 'utf8');
    for (const stage of ['build', 'check']) expect(summary).toMatch(new RegExp(`\\| ${stage} \\| ok \\| \\d+ \\|`));
  });

  it('runs the benchmarks on the kit it built and writes their tables (stages kernels, speculative, quantized, gpt-oss, hybrid, mesh)', async () => {
    const r = await run('run.sh', ['--cpu', '--quick', '--stage', 'kernels,speculative,quantized,gpt-oss,hybrid,mesh', '--carry', carry, '--kit-dir', kit,
      '--results', results, '--copy-to', out]);
    const log = `${r.stdout}\n${r.stderr}`;
    expect(r.status, log.slice(-4000)).toBe(0);
    expect(log).not.toMatch(/configure \(CMake\)/);  // the addon the first half built
    const summary = fs.readFileSync(path.join(results, 'devkit-cpu.md'), 'utf8');
    for (const stage of ['kernels', 'speculative', 'quantized', 'gpt-oss', 'hybrid', 'mesh']) expect(summary).toMatch(new RegExp(`\\| ${stage} \\| ok \\| \\d+ \\|`));
    // mesh: 2 virtual CPU devices: kernels over tensor parallel 2 (with the all-reduce share), serving on it.
    const tables = ['kernels-cpu.md', 'kernels-mini-cpu.md', 'roofline-mini-cpu.md', 'speculative-cpu.md', 'quantized-mini-cpu.md',
      'gpt-oss-mxfp4-quick-cpu.md', 'qwen3_5-vs-qwen3-mini-f32-cpu.md', 'kernels-cpu-tp2.md', 'serving-cpu-tp2.md'];
    // hybrid: the Qwen3.5 row's recurrent state, 3 DeltaNet layers x (3 x 384 conv channels + 4 x 32 x 32) x 4 B = 0.06 MiB,
    // and the K/V its one attention layer adds per token (2 heads of 64, K and V, f32).
    const hybrid = fs.readFileSync(path.join(results, 'qwen3_5-vs-qwen3-mini-f32-cpu.md'), 'utf8');
    expect(hybrid).toMatch(/\| Qwen3\.5 \(mini widths\) \| [\d.]+ \| 0\.06 \| 1024 \|/);
    // gpt-oss: MXFP4 experts narrow (0.531 byte per weight) and expanded at load to f32 (4).
    const oss = fs.readFileSync(path.join(results, 'gpt-oss-mxfp4-quick-cpu.md'), 'utf8');
    expect(oss).toMatch(/\| MXFP4 experts narrow, f32 activations \| [\d.]+ GB \(0\.531\) \|/);
    expect(oss).toMatch(/\| experts expanded at load to f32 \| [\d.]+ GB \(4\.000\) \|/);
    // quantized: f32, three schemes narrow, the same three expanded at load.
    const quant = fs.readFileSync(path.join(results, 'quantized-mini-cpu.md'), 'utf8');
    expect(quant.split('\n').filter((l) => /^\| (f32 weights|int8-channel|int4-g128|fp8-b128)/.test(l))).toHaveLength(7);
    for (const t of tables) expect(fs.readFileSync(path.join(results, t), 'utf8'), t).toMatch(/^\|/m);
    const roof = fs.readFileSync(path.join(results, 'roofline-mini-cpu.md'), 'utf8');
    const rows = roof.split('\n').filter((l) => /^\| \d+ \|/.test(l)).map((l) => l.split('|').map((c) => c.trim()));
    expect(rows.map((c) => Number(c[1]))).toEqual([1, 16, 64]);
    for (const c of rows) expect(Number(c[2])).toBeGreaterThan(0);  // ms per verify
    const tp = fs.readFileSync(path.join(results, 'kernels-cpu-tp2.md'), 'utf8');
    expect(tp).toMatch(/- mesh: tensor parallel 2 x data parallel 1 \(devices 0,1\)/);
    expect(tp).toMatch(/\| 16 \| [\d.]+ \| [\d.]+x \| [\d.]+x \| [\d.]+ \| [\d.]+ \| \d+% \|/);
    expect(fs.readdirSync(out).sort()).toEqual([...tables, 'devkit-cpu.log', 'devkit-cpu.md'].sort());
  });

  it('refuses a carry compiled from other TypeScript sources, and says what to do', async () => {
    const stale = path.join(work, 'stale');
    fs.cpSync(carry, stale, { recursive: true });
    const manifest = path.join(stale, 'manifest.env');
    fs.writeFileSync(manifest, fs.readFileSync(manifest, 'utf8').replace(/^DEVKIT_TS_HASH=.*$/m, 'DEVKIT_TS_HASH=0000'));
    // run.sh sends stderr to its log and stdout (the device tool returns both together).
    const r = await run('run.sh', ['--cpu', '--quick', '--stage', 'check', '--carry', stale, '--kit-dir', kit, '--results', results]);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toContain('compiled from other TypeScript sources');
    expect(r.stdout).toContain('pack-node.sh');
    const missing = await run('run.sh', ['--cpu', '--carry', work, '--kit-dir', kit]);
    expect(missing.status).not.toBe(0);
    expect(missing.stdout).toContain(`no carry in ${work}`);
  });
});

describe('bench/device/travel-light.sh', () => {
  it('leaves room for the carry under the device tool\'s 64 MiB, keeps every file on disk, and restores the index exactly', () => {
    // A clone, so that this checkout's index is never touched.
    const clone = path.join(work, 'light');
    const git = (...args: string[]) => {
      const r = spawnSync('git', args, { cwd: clone, encoding: 'utf8', maxBuffer: 64 << 20 });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    expect(spawnSync('git', ['clone', '-q', ROOT, clone]).status).toBe(0);
    const tracked = () => git('ls-files', '-z').split('\0').filter(Boolean).reduce((a, f) => a + fs.statSync(path.join(clone, f)).size, 0);
    const full = tracked();
    const light = spawnSync('bash', ['bench/device/travel-light.sh'], { cwd: clone, encoding: 'utf8' });
    expect(light.status, light.stderr).toBe(0);
    // The carry (Node, dist/, node_modules, headers) was 21.3 MiB at -9e; 25 MiB of room for it.
    expect(tracked()).toBeLessThan((64 - 25) * 2 ** 20);
    expect(git('status', '--porcelain', '--untracked-files=all').split('\n').filter((l) => l.startsWith('??'))).toEqual([]);
    expect(fs.existsSync(path.join(clone, 'test', 'fixtures', 'models', 'qwen3-f32', 'model.safetensors'))).toBe(true);
    const back = spawnSync('bash', ['bench/device/travel-light.sh', '--restore'], { cwd: clone, encoding: 'utf8' });
    expect(back.status, back.stderr).toBe(0);
    expect(git('status', '--porcelain', '--untracked-files=all')).toBe('');
    expect(tracked()).toBe(full);
  });
});
