// Issue #10, the files a user hands Engine.load: (1) a truncated PJRT plugin, (2) safetensors
// offsets that point into the header, share bytes, are fractional, leave gaps or trailing bytes,
// and the same ranges handed straight to the native engine, (3) a disk program cache entry made
// for another program, and a cut one, (5) config and tokenizer values of the wrong type, (6)
// tensors the model does not use. Every risky case runs in a child process
// (test/helpers/engine-child.js) and asserts the child exits normally; every error must name the
// file and the culprit.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { findPlugin } from '../lib/plugins';
import { readCheckpoint, readSafetensorsHeader, TensorToWrite, writeSafetensors } from '../lib/safetensors';
import { ChildResult, copyModel, DIST, ROOT, editHeader, Header, MODELS, readRaw, runEngines, writeRaw } from './helpers/checkpoint-edit';

const SCRATCH = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-harden-'));
afterAll(() => fs.rmSync(SCRATCH, { recursive: true, force: true }));
const TARGET = path.join(MODELS, 'qwen3-f32');
const DRAFTER = path.join(MODELS, 'qwen3-f32-dflash');
// Programs compiled once for the whole file (the child processes share this directory).
const FAST = { cacheDir: path.join(SCRATCH, 'fast-cache'), warmup: false, maxSeqLen: 64, maxSequences: 1 };
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A copy of the target fixture whose model.safetensors `edit` changes; returns the file. */
function damaged(name: string, edit: (file: string) => void): string {
  const dir = copyModel(TARGET, path.join(SCRATCH, name));
  const file = path.join(dir, 'model.safetensors');
  edit(file);
  return file;
}

/** Tensor `b` made to share tensor `a`'s bytes: b's own bytes are cut out of the data section
 *  and every later offset moves down, so the overlap is the file's only fault (as a writer that
 *  deduplicates tied tensors would produce). */
function shareBytes(file: string, a: string, b: string): void {
  const { header, data } = readRaw(file);
  const ta = header[a] as { data_offsets: [number, number] };
  const tb = header[b] as { data_offsets: [number, number] };
  const [b0, b1] = tb.data_offsets;
  for (const v of Object.values(header)) {
    const t = v as { data_offsets?: [number, number] };
    if (t.data_offsets && t.data_offsets[0] >= b1) t.data_offsets = [t.data_offsets[0] - (b1 - b0), t.data_offsets[1] - (b1 - b0)];
  }
  tb.data_offsets = [...ta.data_offsets];
  writeRaw(file, header, Buffer.concat([data.subarray(0, b0), data.subarray(b1)]));
}

const offsets = (h: Header, name: string) => (h[name] as { data_offsets: [number, number] }).data_offsets;
// Where the fixture's tensors are, for the expected messages: data-section offsets from its header,
// absolute offsets and list positions as readCheckpoint reports them.
const FIXTURE = readRaw(path.join(TARGET, 'model.safetensors'));
const [Q_NORM, K_NORM, NORM] = ['q', 'k', ''].map((p) => (p ? `model.layers.0.self_attn.${p}_norm.weight` : 'model.norm.weight'));
const [q0, q1] = offsets(FIXTURE.header, Q_NORM);
const SOURCES = readCheckpoint(TARGET);

describe('1. a truncated PJRT plugin', () => {
  it('Engine.load names the plugin file; the process survives (no SIGBUS in dlopen)', async () => {
    const real = findPlugin({ env: { DFLASH_PJRT_PLUGIN: process.env.DFLASH_PJRT_PLUGIN } }).path;
    const cut = path.join(fs.mkdirSync(path.join(SCRATCH, 'plugin'), { recursive: true })!, path.basename(real));
    const fd = fs.openSync(real, 'r');
    const head = Buffer.alloc(1 << 20);
    fs.readSync(fd, head, 0, head.length, 0);
    fs.closeSync(fd);
    fs.writeFileSync(cut, head);
    const r = await runEngines([{ id: 'cut', target: TARGET, options: { ...FAST, plugin: cut } }], SCRATCH);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.results[0].ok).toBe(false);
    expect(r.results[0].error!.message).toMatch(new RegExp(`${esc(cut)} is truncated: segment \\d+ ends at byte \\d+ but the file has 1048576 bytes`));
  });
});

describe('2. safetensors offsets: non-negative integers, inside the data section, no overlap, nothing left over', () => {
  const CASES: { name: string; file: () => string; message: (file: string) => RegExp }[] = [
    {
      name: 'data_offsets [-n, 0]: the "tensor" would be the JSON header bytes',
      file: () => damaged('negative', (f) => editHeader(f, (h) => { offsets(h, 'model.norm.weight').splice(0, 2, -256, 0); })),
      message: (f) => new RegExp(`${esc(f)}: malformed header: tensor model\\.norm\\.weight has data_offsets \\[-256,0\\]; they must be two integers 0 <= begin <= end`),
    },
    {
      name: 'two tensors sharing bytes',
      file: () => damaged('shared', (f) => shareBytes(f, Q_NORM, K_NORM)),
      message: (f) => new RegExp(`${esc(f)}: malformed header: tensor model\\.layers\\.0\\.self_attn\\.(q|k)_norm\\.weight \\[${q0}, ${q1}\\) overlaps tensor model\\.layers\\.0\\.self_attn\\.(q|k)_norm\\.weight \\[${q0}, ${q1}\\)`),
    },
    {
      name: 'fractional offsets',
      file: () => damaged('fraction', (f) => editHeader(f, (h) => { const o = offsets(h, 'model.norm.weight'); o.splice(0, 2, o[0] + 0.5, o[1] + 0.5); })),
      message: (f) => new RegExp(`${esc(f)}: malformed header: tensor model\\.norm\\.weight has data_offsets ${esc(JSON.stringify(offsets(FIXTURE.header, NORM).map((o) => o + 0.5)))}`),
    },
    {
      name: 'bytes appended after the last tensor',
      file: () => damaged('trailing', (f) => fs.appendFileSync(f, Buffer.alloc(64, 7))),
      message: (f) => new RegExp(`${esc(f)}: malformed header: the data section has ${FIXTURE.data.length + 64} bytes but the tensors describe ${FIXTURE.data.length}: 64 trailing bytes after tensor lm_head\\.weight`),
    },
    {
      name: 'bytes missing at the end (a cut download)',
      file: () => damaged('cut', (f) => fs.truncateSync(f, fs.statSync(f).size - 4)),
      message: (f) => new RegExp(`${esc(f)}: truncated: tensor lm_head\\.weight ends at byte ${fs.statSync(f).size + 4} but the file has ${fs.statSync(f).size}`),
    },
    {
      name: 'a tensor entry dropped from the header (its bytes belong to nobody)',
      file: () => damaged('gap', (f) => editHeader(f, (h) => { delete h[Q_NORM]; })),
      message: (f) => new RegExp(`${esc(f)}: malformed header: bytes \\[${q0}, ${q1}\\) of the data section belong to no tensor \\(between tensor model\\.layers\\.0\\.self_attn\\.o_proj\\.weight and tensor model\\.layers\\.0\\.self_attn\\.k_norm\\.weight\\)`),
    },
    {
      name: 'a tensor named twice in the header',
      file: () => damaged('twice', (f) => {
        const { text, data } = readRaw(f);
        writeRaw(f, text.replace(/^\{/, '{"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]},'), data);
      }),
      message: (f) => new RegExp(`${esc(f)}: malformed header: "model\\.norm\\.weight" appears twice`),
    },
  ];
  const files = CASES.map((c) => c.file());

  it.each(CASES.map((c, i) => [c.name, i] as const))('%s: an Error naming the file and the tensor', (_, i) => {
    expect(() => readCheckpoint(path.dirname(files[i]))).toThrow(CASES[i].message(files[i]));
  });

  it('Engine.load refuses every one of them in a child process that exits normally; the untouched copy loads', async () => {
    const control = copyModel(TARGET, path.join(SCRATCH, 'control'));
    const r = await runEngines([...files.map((f, i) => ({ id: String(i), target: path.dirname(f), options: FAST })), { id: 'control', target: control, options: FAST }], SCRATCH);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.results).toHaveLength(files.length + 1);
    files.forEach((f, i) => {
      expect(r.results[i].ok, CASES[i].name).toBe(false);
      expect(r.results[i].error!.message).toMatch(CASES[i].message(f));
    });
    expect(r.results[files.length]).toMatchObject({ ok: true, finite: true });
  });

  it('the native engine refuses the same ranges handed to it directly (not only lib/safetensors.ts)', () => {
    const script = `
      const [dist, target] = process.argv.slice(1);
      const fs = require('fs');
      const { native } = require(dist + '/native.js');
      const { targetConfigFromHF } = require(dist + '/config.js');
      const { readCheckpoint } = require(dist + '/safetensors.js');
      const { findPlugin } = require(dist + '/plugins.js');
      const cfg = targetConfigFromHF(JSON.parse(fs.readFileSync(target + '/config.json', 'utf8')), 'config.json', { slidingWindows: true, moe: true });
      const ts = readCheckpoint(target);
      const at = (name) => ts.find((t) => t.name === name);
      const set = (name, patch) => ts.map((t) => (t.name === name ? { ...t, ...patch } : t));
      const N = 'model.norm.weight', Q = 'model.layers.0.self_attn.q_norm.weight', K = 'model.layers.0.self_attn.k_norm.weight';
      const edits = {
        header: set(N, { offset: 8 }),
        overlap: set(K, { offset: at(Q).offset }),
        pastEnd: set(N, { offset: fs.statSync(at(N).file).size - 128 }),
        size: set(N, { nbytes: 128 }),
        negative: set(N, { offset: -256 }),
        nan: set(N, { offset: NaN }),
        fraction: set(N, { offset: at(N).offset + 0.5 }),
        notObject: [...ts, 5],
        twice: [...ts, at(N)],
      };
      (async () => {
        const client = await native().openClient(findPlugin({}).path);
        const out = {};
        for (const [k, sources] of Object.entries(edits)) {
          const eng = native().createEngine(client, { target: cfg, eosTokenIds: [], options: { cacheDir: '', warmup: false, maxSeqLen: 64 } }, () => {});
          try { await eng.load(sources, undefined); out[k] = 'loaded'; } catch (e) { out[k] = e.constructor.name + ': ' + e.message; }
          await eng.dispose();
        }
        client.dispose();
        console.log(JSON.stringify(out));
      })();`;
    const r = spawnSync(process.execPath, ['-e', script, DIST, TARGET], { encoding: 'utf8', timeout: 120_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    const file = esc(path.join(TARGET, 'model.safetensors'));
    const q = SOURCES.find((t) => t.name === Q_NORM)!;
    const size = fs.statSync(q.file).size;
    const norm = SOURCES.findIndex((t) => t.name === NORM);
    expect(out.header).toMatch(new RegExp(`^Error: tensor model\\.norm\\.weight: bytes \\[8, 264\\) of ${file} lie in its header \\(the data starts at byte ${8 + Buffer.byteLength(FIXTURE.text)}\\)`));
    expect(out.overlap).toMatch(new RegExp(`^Error: tensor model\\.layers\\.0\\.self_attn\\.(q|k)_norm\\.weight: bytes \\[${q.offset}, ${q.offset + 64}\\) of ${file} overlap tensor model\\.layers\\.0\\.self_attn\\.(q|k)_norm\\.weight`));
    expect(out.pastEnd).toMatch(new RegExp(`^Error: tensor model\\.norm\\.weight: bytes \\[${size - 128}, ${size + 128}\\) lie past the end of ${file} \\(${size} bytes`));
    expect(out.size).toMatch(/^Error: tensor model\.norm\.weight in .*: 128 bytes for F32\[64\]/);
    for (const k of ['negative', 'nan', 'fraction'])
      expect(out[k], k).toMatch(new RegExp(`^TypeError: load: tensor source ${norm} \\(model\\.norm\\.weight\\): 'offset' must be a non-negative integer`));
    expect(out.notObject).toMatch(new RegExp(`^TypeError: load: tensor source ${SOURCES.length} must be an object`));
    expect(out.twice).toMatch(/^Error: tensor model\.norm\.weight is given twice/);
  });
});

describe('3. the disk program cache does not trust its files', () => {
  const cacheDir = path.join(SCRATCH, 'programs');
  const start = async (id: string) => {
    const r = await runEngines([{ id, target: TARGET, options: { cacheDir, maxSeqLen: 64, maxSequences: 1 } }], SCRATCH);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.results[0].ok, JSON.stringify(r.results[0].error)).toBe(true);
    return r.results[0];
  };
  const kinds = (res: ChildResult, kind: string) => res.events.filter((e) => e.kind === kind);

  it('a valid entry copied over another program\'s file: a reported cache-reject, the same logits, and the next start hits the cache', async () => {
    const first = await start('first');
    expect(kinds(first, 'compile-done').length).toBeGreaterThanOrEqual(2);
    const entries = fs.readdirSync(cacheDir).filter((f) => f.endsWith('.pjrt')).sort();
    expect(entries.length).toBeGreaterThanOrEqual(2);
    const [from, over] = entries.map((f) => path.join(cacheDir, f));
    fs.copyFileSync(from, over);

    const second = await start('second');
    const rejects = kinds(second, 'cache-reject');
    expect(rejects).toHaveLength(1);
    expect(rejects[0].detail).toMatch(new RegExp(`^${esc(over)}: made for another program, plugin or version \\(.+\\); recompiling$`));
    expect(second.stats!.diskCacheRejects).toBe(1);
    expect(kinds(second, 'cache-load').length).toBe(entries.length - 1);
    expect(second.logits).toBe(first.logits);
    expect(second.ids).toEqual(first.ids);

    const third = await start('third');
    expect(kinds(third, 'cache-reject')).toEqual([]);
    expect(kinds(third, 'compile-start')).toEqual([]);
    expect(kinds(third, 'cache-load').length).toBe(entries.length);
    expect(third.logits).toBe(first.logits);
  });

  it('an entry cut in half (a full disk): a reported cache-reject, never a crash', async () => {
    const entry = path.join(cacheDir, fs.readdirSync(cacheDir).filter((f) => f.endsWith('.pjrt')).sort()[0]);
    const bytes = fs.readFileSync(entry);
    fs.writeFileSync(entry, bytes.subarray(0, bytes.length >> 1));
    const res = await start('cut');
    const rejects = kinds(res, 'cache-reject');
    expect(rejects).toHaveLength(1);
    expect(rejects[0].detail).toMatch(new RegExp(`^${esc(entry)}: .+; recompiling$`));
    expect(fs.statSync(entry).size).toBe(bytes.length);  // overwritten by the recompiled entry
  });
});

describe('3. two processes sharing a cache directory', () => {
  it('two starts at once on an empty cache both load and leave no temporary file; a third start only loads (no entry half-written)', async () => {
    const cacheDir = path.join(SCRATCH, 'shared-programs');
    const start = () => runEngines([{ id: 'p', target: TARGET, options: { cacheDir, maxSeqLen: 64, maxSequences: 1 } }], SCRATCH);
    const both = await Promise.all([start(), start()]);
    for (const r of both) {
      expect(r.signal, r.stderr).toBeNull();
      expect(r.status, r.stderr).toBe(0);
      expect(r.results[0].ok, JSON.stringify(r.results[0].error)).toBe(true);
    }
    expect(both[1].results[0].logits).toBe(both[0].results[0].logits);
    expect(fs.readdirSync(cacheDir).filter((f) => !f.endsWith('.pjrt'))).toEqual([]);  // no temporary file left
    const third = await start();
    expect(third.results[0].events.map((e) => e.kind).filter((k) => k !== 'cache-load')).toEqual([]);
    expect(third.results[0].logits).toBe(both[0].results[0].logits);
  });
});

describe('5. config values of the wrong type name the file, the key and the value', () => {
  const base = JSON.parse(fs.readFileSync(path.join(TARGET, 'config.json'), 'utf8'));
  it.each([
    ['num_hidden_layers', 2.5, /'num_hidden_layers' must be an integer >= 1 \(got 2\.5\)/],
    ['hidden_size', '64', /'hidden_size' must be an integer >= 1 \(got "64"\)/],
    ['num_attention_heads', 1e12, /'num_attention_heads' is 1000000000000, above the largest supported value 1024/],
    ['attention_bias', 'yes', /'attention_bias' must be true or false \(got "yes"\)/],
    ['tie_word_embeddings', 'false', /'tie_word_embeddings' must be true or false \(got "false"\)/],
  ] as const)('%s = %j', async (key, value, message) => {
    const dir = copyModel(TARGET, path.join(SCRATCH, `config-${key}`));
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ ...base, [key]: value }));
    const err = await Engine.load({ target: dir, ...FAST }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(new RegExp(`^${esc(file)}: ${message.source}`));
  });
});

describe('5. tokenizer files: a value of the wrong type is an error, not a template or token dropped', () => {
  it.each([
    ['tokenizer_config.json', { chat_template: 5 }, /'chat_template' must be a template string or a list of \{name, template\}, got 5/],
    ['tokenizer_config.json', { chat_template: [{ name: 'default' }] }, /'chat_template' must be a template string or a list of \{name, template\}/],
    ['tokenizer_config.json', { eos_token: 7 }, /'eos_token' must be a token string or an object with a string "content", got 7/],
    ['generation_config.json', { eos_token_id: ['x'] }, /'eos_token_id' must be a token id or a list of token ids, got \["x"\]/],
  ] as const)('%s %j', async (name, json, message) => {
    const dir = copyModel(TARGET, path.join(SCRATCH, `tokenizer-${name}-${Object.keys(json)[0]}-${JSON.stringify(json).length}`));
    const file = path.join(dir, name);
    const before = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
    fs.writeFileSync(file, JSON.stringify({ ...before, ...json }));
    const err = await Engine.load({ target: dir, ...FAST }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(new RegExp(`^${esc(file)}: ${message.source}`));
  });
});

describe('6. tensors the model does not use', () => {
  // Bias tensors in a checkpoint whose config says attention_bias: false.
  function withBiases(name: string, src: string, prefix: string): string {
    const dir = copyModel(src, path.join(SCRATCH, name));
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const tensors: TensorToWrite[] = readSafetensorsHeader(file).map((t) => ({
      name: t.name, dtype: t.dtype as 'F32', shape: t.shape, data: bytes.subarray(t.offset, t.offset + t.nbytes),
    }));
    for (const p of ['q', 'k', 'v']) tensors.push({ name: `${prefix}layers.0.self_attn.${p}_proj.bias`, dtype: 'F32', shape: [p === 'q' ? 64 : 32], data: new Float32Array(p === 'q' ? 64 : 32).fill(1) });
    writeSafetensors(file, tensors);
    return dir;
  }

  it('one process warning (code DFLASH_UNUSED_TENSORS) listing them, target and drafter; none for a clean checkpoint', async () => {
    const target = withBiases('unused-target', TARGET, 'model.');
    const drafter = withBiases('unused-drafter', DRAFTER, '');
    const r = await runEngines([
      { id: 'biases', target, drafter, options: FAST },
      { id: 'clean', target: TARGET, drafter: DRAFTER, options: FAST },
    ], SCRATCH);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const [biases, clean] = r.results;
    expect(biases.ok).toBe(true);
    const warned = biases.warnings.filter((w) => w.code === 'DFLASH_UNUSED_TENSORS');
    expect(warned).toHaveLength(1);
    expect(warned[0].message).toMatch(/^the checkpoint holds 6 tensor\(s\) the model does not use: /);
    for (const p of ['q', 'k', 'v']) {
      expect(warned[0].message).toContain(`model.layers.0.self_attn.${p}_proj.bias`);
      expect(warned[0].message).toContain(`drafter layers.0.self_attn.${p}_proj.bias`);
    }
    expect(biases.logits).toBe(clean.logits);  // the extra tensors change nothing
    expect(clean.warnings.filter((w) => w.code === 'DFLASH_UNUSED_TENSORS')).toEqual([]);
  });
});

describe('process.exit() while programs compile', () => {
  it('exits with the code it was given, never a signal (the plugin\'s destructors would race its compile)', async () => {
    // Without lib/exit-guard.ts, 7 of 12 such exits of `dflash serve` died of SIGSEGV, 10 of 10
    // of this script's run alone (SIGSEGV or SIGABRT), and this test failed 2 of 3 runs. One at
    // a time: with the cores free the compile thread runs while exit() frees the plugin's state.
    const [target, drafter] = ['target', 'drafter'].map((m) => path.join(ROOT, 'models', 'code-pair', m));
    const script = `
      const [dist, target, drafter, cacheDir, delay] = process.argv.slice(1);
      const { Engine } = require(dist + '/engine.js');
      Engine.load({ target, drafter, cacheDir, maxSeqLen: 256, maxSequences: 4, warmup: false }).then((engine) => {
        engine.precompile().catch(() => {});
        setTimeout(() => process.exit(7), Number(delay));
      });`;
    for (const delay of [200, 500, 800, 1100]) {
      const cacheDir = fs.mkdtempSync(path.join(SCRATCH, 'exit-'));
      const r = await new Promise<{ code: number | null; signal: string | null; err: string }>((resolve) => {
        const child = spawn(process.execPath, ['-e', script, DIST, target, drafter, cacheDir, String(delay)], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr!.on('data', (d) => (err += d));
        child.on('exit', (code, signal) => resolve({ code, signal, err }));
      });
      expect({ delay, code: r.code, signal: r.signal }, r.err).toEqual({ delay, code: 7, signal: null });
    }
  });
});
