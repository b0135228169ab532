// Issue #10.4: no argument is silently coerced or misreported. Every input the issue lists
// (blockSize 0 / NaN / 2.5 / '4', token ids 1.5 / NaN / 'abc' / 2^32+5, stop: 5, maxTokens and
// topK 2^31) and the neighbours a new user tries (misspelt option names, a wrong prompt shape,
// a string signal, Engine.load options of the wrong type). Each asserts the error's class and a
// message naming the option (or prompt element), the value received and the accepted range;
// afterwards the engine still generates and holds no sequence or page.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { MODELS } from './helpers/checkpoint-edit';

const SCRATCH = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-args-'));
const TARGET = path.join(MODELS, 'qwen3-f32');
const DRAFTER = path.join(MODELS, 'qwen3-f32-dflash');
const PROMPT = [3, 14, 15, 92, 65, 35];
let engine: Engine;

beforeAll(async () => {
  engine = await Engine.load({ target: TARGET, drafter: DRAFTER, cacheDir: SCRATCH, maxSeqLen: 64, maxSequences: 2 });
});
afterAll(async () => {
  await engine?.close();
  fs.rmSync(SCRATCH, { recursive: true, force: true });
});

/** What `f` throws synchronously (fails the test when it does not throw). */
function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

type Case = [label: string, call: () => unknown, kind: typeof TypeError | typeof RangeError, message: RegExp];
const gen = (prompt: unknown, options: unknown) => () => engine.generate(prompt as number[], options as object);
const range = (opt: string, lo: number, hi: number, got: string) =>
  new RegExp(`^generate: option '${opt}' must be an integer in \\[${lo}, ${hi}\\], got ${got}$`);

describe('generate(): the issue\'s inputs', () => {
  const cases: Case[] = [
    ['blockSize NaN', gen(PROMPT, { speculative: { blockSize: NaN } }), RangeError, range('blockSize', 0, 1024, 'NaN')],
    ['blockSize 2.5', gen(PROMPT, { speculative: { blockSize: 2.5 } }), RangeError, range('blockSize', 0, 1024, '2\\.5')],
    ["blockSize '4'", gen(PROMPT, { speculative: { blockSize: '4' } }), RangeError, range('blockSize', 0, 1024, "'4'")],
    ['token id 1.5', gen([3, 1.5], {}), RangeError, /^prompt token at index 1 must be a non-negative integer token id, got 1\.5 /],
    ['token id NaN', gen([3, NaN], {}), RangeError, /^prompt token at index 1 must be a non-negative integer token id, got NaN /],
    ["token id 'abc'", gen([3, 'abc'], {}), RangeError, /^prompt token at index 1 must be a non-negative integer token id, got 'abc' /],
    ['token id 2^32 + 5', gen([3, 2 ** 32 + 5], {}), RangeError, /^prompt token at index 1 must be a non-negative integer token id, got 4294967301 /],
    ['stop: 5', gen(PROMPT, { stop: 5 }), TypeError, /^generate: option 'stop' must be a string or an array of strings, got 5$/],
    ['maxTokens 2^31', gen(PROMPT, { maxTokens: 2 ** 31 }), RangeError, range('maxTokens', 1, 16777216, '2147483648')],
    ['topK 2^31', gen(PROMPT, { topK: 2 ** 31 }), RangeError, range('topK', 0, 16777216, '2147483648')],
  ];
  it.each(cases)('%s', (_, call, kind, message) => {
    const err = thrown(call);
    expect(err).toBeInstanceOf(kind);
    expect(err.message).toMatch(message);
  });

  it('blockSize 0 means the drafter\'s block size (documented in the schema): the same tokens and blocks as the default', async () => {
    const steps = (o: object) => {
      const s = engine.generate(PROMPT, { maxTokens: 12, ...o });
      const blocks: number[] = [];
      s.on('step', (e) => blocks.push(e.block));
      return s.done().then((d) => ({ ids: d.ids, blocks }));
    };
    const zero = await steps({ speculative: { blockSize: 0 } });
    const dflt = await steps({});
    expect(zero.ids).toEqual(dflt.ids);
    expect(Math.max(...zero.blocks)).toBeLessThanOrEqual(engine.config.drafter!.blockSize);
    expect(zero.blocks.length).toBeGreaterThan(0);
  });
});

describe('generate(): what a new user tries next', () => {
  const cases: Case[] = [
    ['a misspelt option', gen(PROMPT, { max_tokens: 5 }), TypeError, /^generate: unknown option 'max_tokens' \(known: maxTokens, temperature, topP, topK, seed, stop, signal, speculative, logprobs, promptLogprobs, grammar, chatTemplateKwargs\)$/],
    ['a misspelt speculative key', gen(PROMPT, { speculative: { blocksize: 4 } }), TypeError, /^generate: option 'speculative': unknown option 'blocksize' \(known: blockSize\)$/],
    ['speculative: true', gen(PROMPT, { speculative: true }), TypeError, /^generate: option 'speculative' must be false or \{ blockSize \}, got true$/],
    ['a stop list with a number', gen(PROMPT, { stop: ['a', 7] }), TypeError, /^generate: option 'stop' must be a string or an array of strings, got 7 at index 1$/],
    ['a string signal', gen(PROMPT, { signal: 'abort' }), TypeError, /^generate: option 'signal' must be an AbortSignal, got 'abort'$/],
    ['options null', gen(PROMPT, null), TypeError, /^generate: options must be an object, got null$/],
    ["temperature '0.5'", gen(PROMPT, { temperature: '0.5' }), RangeError, /^generate: option 'temperature' must be a number in \[0, 1000000\], got '0\.5'$/],
    ['temperature Infinity', gen(PROMPT, { temperature: Infinity }), RangeError, /option 'temperature' must be a number in \[0, 1000000\], got Infinity$/],
    ['topP 0', gen(PROMPT, { topP: 0 }), RangeError, /^generate: option 'topP' must be a number in \[1e-09, 1\], got 0$/],
    ['seed -1', gen(PROMPT, { seed: -1 }), RangeError, range('seed', 0, 9007199254740991, '-1')],
    ['seed 2^53', gen(PROMPT, { seed: 2 ** 53 }), RangeError, range('seed', 0, 9007199254740991, '9007199254740992')],
    ['maxTokens null', gen(PROMPT, { maxTokens: null }), RangeError, range('maxTokens', 1, 16777216, 'null')],
    ['a number as the prompt', gen(5, {}), TypeError, /^generate: the prompt must be a string, an array of token ids or an array of \{ role, content \} chat messages, got 5$/],
    ['an object as the prompt', gen({ text: 'hi' }, {}), TypeError, /^generate: the prompt must be .*, got \{"text":"hi"\}$/],
    ['a chat message without content', gen([{ role: 'user' }], {}), TypeError, /^generate: chat message 0 must be an object with a string 'role' and a string 'content', got \{"role":"user"\}$/],
    ['strings as the prompt', gen(['hello'], {}), RangeError, /^prompt token at index 0 must be a non-negative integer token id, got 'hello' \(a prompt is a string, an array of token ids or an array of \{ role, content \} chat messages\)$/],
  ];
  it.each(cases)('%s', (_, call, kind, message) => {
    const err = thrown(call);
    expect(err).toBeInstanceOf(kind);
    expect(err.message).toMatch(message);
  });

  it('what only the scheduler can know rejects the stream with a RangeError naming the value and the limit', async () => {
    const rejects = async (p: number[], o: object) => engine.generate(p, o).done().then(() => new Error('resolved'), (e: Error) => e);
    const vocab = engine.config.target.vocabSize;
    const cases: [Error, RegExp][] = [
      [await rejects([3, vocab], {}), new RegExp(`^prompt token ${vocab} at index 1 is outside the vocabulary \\(0\\.\\.${vocab - 1}\\)$`)],
      [await rejects([], {}), /^prompt is empty: at least one token is needed$/],
      [await rejects(PROMPT, { speculative: { blockSize: 64 } }), /^option 'blockSize' must be in \[0, 8\] \(0 = the drafter's block size, 8\), got 64$/],
      [await rejects(PROMPT, { maxTokens: 100 }), /^prompt \(6 tokens\) \+ maxTokens \(100\) exceeds maxSeqLen 64$/],
    ];
    for (const [err, message] of cases) {
      expect(err).toBeInstanceOf(RangeError);
      expect(err.message).toMatch(message);
    }
  });

  it('afterwards the engine generates and holds no sequence or page', async () => {
    const done = await engine.generate(PROMPT, { maxTokens: 4 }).done();
    expect(done.ids).toHaveLength(4);
    const s = engine.stats();
    expect([s.runningSequences, s.queuedSequences, s.freePages]).toEqual([0, 0, s.totalPages]);
  });
});

describe('Engine.load(): options are checked before anything is read or allocated', () => {
  const load = (o: object) => Engine.load({ target: TARGET, ...o } as Parameters<typeof Engine.load>[0]).then(() => new Error('loaded'), (e: Error) => e);
  it.each([
    ['maxSeqLen 2.5', { maxSeqLen: 2.5 }, RangeError, /^Engine\.load: option 'maxSeqLen' must be an integer in \[0, 16777216\], got 2\.5$/],
    ['pageSize 3', { pageSize: 3 }, RangeError, /^Engine\.load: option 'pageSize' must be a power of two in \[1, 1024\], got 3$/],
    ['maxSequences NaN', { maxSequences: NaN }, RangeError, /^Engine\.load: option 'maxSequences' must be an integer in \[1, 1024\], got NaN$/],
    ["dtype 'F32'", { dtype: 'F32' }, RangeError, /^Engine\.load: option 'dtype' must be one of 'auto', 'f32', 'bf16', 'f16', got 'F32'$/],
    ['a misspelt option', { draft: DRAFTER }, TypeError, /^Engine\.load: unknown option 'draft' \(known: target, drafter, plugin, cacheDir, onProgress, devices, pageSize, .*tensorParallel, dataParallel, /],
    ['plugin 5', { plugin: 5 }, TypeError, /^Engine\.load: option 'plugin' must be a plugin file path, got 5$/],
    ['onProgress 5', { onProgress: 5 }, TypeError, /^Engine\.load: option 'onProgress' must be a function, got 5$/],
    ['cacheDir true', { cacheDir: true }, TypeError, /^Engine\.load: option 'cacheDir' must be a directory path or false, got true$/],
    ['target 5', { target: 5 }, TypeError, /^Engine\.load: option 'target' must be a model directory or a \.gguf file, got 5$/],
  ] as const)('%s', async (_, options, kind, message) => {
    const err = await load(options);
    expect(err).toBeInstanceOf(kind);
    expect(err.message).toMatch(message);
  });
});
