// Issue #10.7: a bounded, deterministic fuzz run of what Engine.load reads, on a real fixture
// (qwen3-f32): (a) random byte edits and cuts of the safetensors length prefix and header,
// (b) random edits of the parsed header (types swapped, numbers out of range, keys dropped,
// duplicated or renamed, offsets shifted, swapped, shuffled), (c) random edits of config.json.
// Every case either loads or fails with an Error naming a file of its directory, and the loads
// run in one child process that must exit normally. Oracles:
// - the reference reader (huggingface/safetensors in .venv-train) accepts every header we accept
//   and assigns every tensor the same dtype, shape and bytes; where we refuse what it accepts, the
//   reason is one of our documented stricter rules (alignment, a name twice, a dtype we do not know);
// - a load whose tensors (a, b) or parsed config (c) equal the original's computes bit-identical
//   logits (no garbage weights in a load that succeeds);
// - a config value whose JSON type was changed is never read as a valid value.
import { spawnSync } from 'child_process';
import fc from 'fast-check';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { targetConfigFromHF } from '../lib/config';
import { readSafetensorsHeader } from '../lib/safetensors';
import { ChildResult, MODELS, readRaw, ROOT, runEngines, writeRaw } from './helpers/checkpoint-edit';
import { applyBytes, applyConfig, applyJson, byteMutation, configMutation, ConfigOp, jsonMutation } from './helpers/mutations';

const SEED = 2910;
const RUNS = { bytes: 150, json: 250, config: 150 };
const PYTHON = path.join(ROOT, '.venv-train', 'bin', 'python');
const SCRATCH = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-fuzz-'));
afterAll(() => fs.rmSync(SCRATCH, { recursive: true, force: true }));

const TARGET = path.join(MODELS, 'qwen3-f32');
const WEIGHTS = path.join(TARGET, 'model.safetensors');
const ORIGINAL = fs.readFileSync(WEIGHTS);
const RAW = readRaw(WEIGHTS);
const HEAD = 8 + Buffer.byteLength(RAW.text);  // the length prefix + header: where (a) edits bytes
const CONFIG = JSON.parse(fs.readFileSync(path.join(TARGET, 'config.json'), 'utf8')) as Record<string, unknown>;
const CAPABILITIES = { slidingWindows: true, moe: true };  // as Engine.load declares them
const OPTIONS = { cacheDir: path.join(SCRATCH, 'programs'), warmup: false, maxSeqLen: 64, maxSequences: 1 };

type Kind = 'bytes' | 'json' | 'config';
interface Case { id: string; kind: Kind; mutation: unknown; dir: string; weights: string; config: string }
type Reading = { ok: true; tensors: Record<string, [string, number[], string]> } | { ok: false; error: string };

/** A case directory: the mutated file written, the others linked to the fixture's. */
function makeCase(kind: Kind, i: number, mutation: unknown, write: (dir: string) => void): Case {
  const dir = path.join(SCRATCH, `${kind}-${i}`);
  fs.mkdirSync(dir);
  write(dir);
  for (const f of fs.readdirSync(TARGET)) if (!fs.existsSync(path.join(dir, f))) fs.symlinkSync(path.join(TARGET, f), path.join(dir, f));
  return { id: `${kind}-${i}`, kind, mutation, dir, weights: path.join(dir, 'model.safetensors'), config: path.join(dir, 'config.json') };
}

/** Our reader's view of a file, in the reference script's terms. */
function ours(file: string): Reading {
  try {
    const bytes = fs.readFileSync(file);
    const tensors: Record<string, [string, number[], string]> = {};
    for (const t of readSafetensorsHeader(file))
      tensors[t.name] = [t.dtype, t.shape, crypto.createHash('sha256').update(bytes.subarray(t.offset, t.offset + t.nbytes)).digest('hex')];
    return { ok: true, tensors };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

function parsedConfig(file: string, json = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>): unknown {
  try {
    return targetConfigFromHF(json, file, CAPABILITIES);
  } catch {
    return undefined;
  }
}

const jsonType = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
// Rules by which we refuse files the reference reader accepts (lib/safetensors.ts, header comment).
const STRICTER = /not aligned to its|appears twice|has unknown dtype/;

let cases: Case[] = [];
let results = new Map<string, ChildResult>();
let reference = new Map<string, Reading>();
let control: ChildResult;
const original = ours(WEIGHTS);
const originalConfig = parsedConfig(path.join(TARGET, 'config.json'));

beforeAll(async () => {
  expect(fs.existsSync(PYTHON), 'the reference reader lives in .venv-train (scripts/setup.sh installs it)').toBe(true);
  const names = Object.keys(RAW.header).filter((k) => k !== '__metadata__');
  cases = [
    ...fc.sample(byteMutation, { seed: SEED, numRuns: RUNS.bytes }).map((ops, i) =>
      makeCase('bytes', i, ops, (d) => fs.writeFileSync(path.join(d, 'model.safetensors'), applyBytes(ORIGINAL, HEAD, ops)))),
    ...fc.sample(jsonMutation(names), { seed: SEED + 1, numRuns: RUNS.json }).map((m, i) =>
      makeCase('json', i, m, (d) => writeRaw(path.join(d, 'model.safetensors'), applyJson(RAW.header, m, RAW.data.length), RAW.data))),
    ...fc.sample(configMutation(Object.keys(CONFIG)), { seed: SEED + 2, numRuns: RUNS.config }).map((ops, i) =>
      makeCase('config', i, ops, (d) => fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(applyConfig(CONFIG, ops))))),
  ];
  const files = cases.filter((c) => c.kind !== 'config').map((c) => c.weights);
  const list = path.join(SCRATCH, 'files.json');
  fs.writeFileSync(list, JSON.stringify(files));
  const py = spawnSync(PYTHON, [path.join(ROOT, 'test', 'helpers', 'safetensors_reference.py'), list], { encoding: 'utf8', maxBuffer: 64 << 20 });
  expect(py.status, py.stderr).toBe(0);
  const lines = py.stdout.trim().split('\n').map((l) => JSON.parse(l) as Reading);
  reference = new Map(files.map((f, i) => [f, lines[i]]));

  const run = await runEngines([
    { id: 'control', target: TARGET, options: OPTIONS, maxTokens: 0 },
    ...cases.map((c) => ({ id: c.id, target: c.dir, options: OPTIONS, maxTokens: 0 })),
  ], SCRATCH);
  expect(run.signal, `the child died after ${run.results.at(-1)?.id}: ${run.stderr}`).toBeNull();
  expect(run.status, run.stderr).toBe(0);
  expect(run.results).toHaveLength(cases.length + 1);
  control = run.results[0];
  expect(control.ok).toBe(true);
  results = new Map(run.results.map((r) => [r.id, r]));
});

/** Every broken invariant of one case, as text (empty when the case passes). */
function problems(c: Case): string[] {
  const out: string[] = [];
  const r = results.get(c.id)!;
  if (!r.ok && !r.error!.message.includes(c.dir)) out.push(`the error names no file of the case: ${r.error!.name}: ${r.error!.message}`);
  if (c.kind !== 'config') {
    const mine = ours(c.weights);
    const ref = reference.get(c.weights)!;
    if (mine.ok && !ref.ok) out.push(`we accept a header the reference refuses (${ref.error})`);
    if (mine.ok && ref.ok && !same(Object.entries(mine.tensors).sort(), Object.entries(ref.tensors).sort()))
      out.push('we read other tensors than the reference');
    if (!mine.ok && ref.ok && !STRICTER.test(mine.error)) out.push(`we refuse a header the reference accepts: ${mine.error}`);
    if (r.ok && !mine.ok) out.push('Engine.load accepted a header readSafetensorsHeader refuses');
    if (r.ok && mine.ok && original.ok && same(Object.entries(mine.tensors).sort(), Object.entries(original.tensors).sort()) && r.logits !== control.logits)
      out.push('the same tensors as the original, other logits');
  } else {
    const parsed = parsedConfig(c.config);
    if (r.ok && same(parsed, originalConfig) && r.logits !== control.logits) out.push('the same parsed config as the original, other logits');
    // A value whose type changed and that loads must not have been read: putting the original
    // value back leaves the parsed config as it is.
    const mutated = JSON.parse(fs.readFileSync(c.config, 'utf8')) as Record<string, unknown>;
    for (const o of c.mutation as ConfigOp[])
      if (r.ok && o.op === 'swap' && o.key in CONFIG && o.key in mutated && jsonType(mutated[o.key]) !== jsonType(CONFIG[o.key]) &&
          !same(parsedConfig(c.config, { ...mutated, [o.key]: CONFIG[o.key] }), parsed))
        out.push(`'${o.key}' of type ${jsonType(mutated[o.key])} (was ${jsonType(CONFIG[o.key])}) was read as a value`);
  }
  return out;
}

describe.each(['bytes', 'json', 'config'] as const)('fuzz (%s)', (kind) => {
  it('every case loads correctly or fails naming a file; nothing crashes; the oracles agree', () => {
    const mine = cases.filter((c) => c.kind === kind);
    const failures = mine.map((c) => ({ c, p: problems(c) })).filter((x) => x.p.length > 0)
      .map(({ c, p }) => `${c.id} ${JSON.stringify(c.mutation)}\n  ${p.join('\n  ')}`);
    expect(failures.join('\n')).toBe('');
    // Both outcomes occur, so the oracles above were exercised (the run is not vacuous).
    const loaded = mine.filter((c) => results.get(c.id)!.ok).length;
    expect(loaded, 'loads').toBeGreaterThan(0);
    expect(mine.length - loaded, 'refusals').toBeGreaterThan(0);
  });
});
