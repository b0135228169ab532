// tools/gguf/convert.py, the converter behind `npm run bench:peers`: llama.cpp (node-llama-cpp's
// prebuilt CPU build) must load what it writes and decode greedily the same tokens dflash decodes
// from the source checkpoint. Only running llama.cpp can check the parts a reader cannot: the
// q/k row order for Llama's RoPE, Qwen3's q/k norms, tied embeddings, the tokenizer metadata.
// The converter's Python environment (.venv-gguf) is made on first use, as the bench makes it.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { convert, Dtype } from '../bench/gguf';
import { Engine } from '../lib/engine';
import { makeTarget, TinyTarget, tmpDir } from './helpers/tiny-model';

type NodeLlamaCpp = typeof import('node-llama-cpp');
type Llama = Awaited<ReturnType<NodeLlamaCpp['getLlama']>>;

const PROMPT = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100];  // "Hello, world" as bytes
const TOKENS = 16;
const EOS = 256;  // the tiny tokenizer's <|endoftext|>

let llama: Llama;
let dir: string;

beforeAll(async () => {
  const nlc: NodeLlamaCpp = await import('node-llama-cpp');
  // The prebuilt binaries from npm or an error: never a download, never a compile.
  llama = await nlc.getLlama({ gpu: false, build: 'never', skipDownload: true, maxThreads: 0, progressLogs: false, logLevel: nlc.LlamaLogLevel.error });
  dir = tmpDir('dflash-gguf-');
});

afterAll(async () => {
  await llama?.dispose();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function llamaGreedy(gguf: string): Promise<number[]> {
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 64, threads: 1, sequences: 1 });
  try {
    const ids: number[] = [];
    for await (const tok of context.getSequence().evaluate(PROMPT as never[], { temperature: 0 })) {
      if ((tok as number) === EOS) break;
      ids.push(tok as number);
      if (ids.length >= TOKENS) break;
    }
    return ids;
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

async function dflashGreedy(target: string): Promise<number[]> {
  const engine = await Engine.load({ target, maxSeqLen: 64, maxSequences: 1 });
  try {
    return (await engine.generate(PROMPT, { maxTokens: TOKENS, speculative: false }).done()).ids;
  } finally {
    engine.dispose();
  }
}

/** The tiny byte tokenizer has no merges, which llama.cpp refuses; its last (unused) special
 *  token becomes the merge "h" + "e" instead. */
function addOneMerge(ckpt: string): void {
  const file = path.join(ckpt, 'tokenizer.json');
  const tj = JSON.parse(fs.readFileSync(file, 'utf8'));
  const last = tj.added_tokens.pop();
  delete tj.model.vocab[last.content];
  tj.model.vocab.he = last.id;
  tj.model.merges = [['h', 'e']];
  fs.writeFileSync(file, JSON.stringify(tj));
}

function convertTiny(name: string, shape: TinyTarget, dtype: Dtype, copy = false): { ckpt: string; gguf: string; copy16?: string } {
  const ckpt = path.join(dir, name);
  makeTarget(ckpt, { std: 0.3, ...shape });
  addOneMerge(ckpt);
  const gguf = path.join(dir, `${name}-${dtype}.gguf`);
  const copy16 = copy ? path.join(dir, `${name}-${dtype}-copy`) : undefined;
  convert(ckpt, gguf, dtype, copy16);
  return { ckpt, gguf, copy16 };
}

describe('tools/gguf/convert.py', () => {
  const cases: Array<[string, TinyTarget]> = [
    ['Qwen3 (q/k norms, NEOX RoPE)', { family: 'qwen3' }],
    ['Llama (q/k rows permuted for llama.cpp RoPE)', { family: 'llama' }],
    ['Qwen3 with tied embeddings (no output tensor)', { family: 'qwen3', tie: true, seed: 7 }],
  ];
  for (const [name, shape] of cases) {
    it(`f32 ${name}: llama.cpp decodes the tokens dflash decodes`, async () => {
      const { ckpt, gguf } = convertTiny(name.split(' ')[0].toLowerCase() + (shape.tie ? '-tied' : ''), shape, 'f32');
      const mine = await dflashGreedy(ckpt);
      expect(mine.length, 'the random model should not stop at once').toBeGreaterThan(4);
      expect(await llamaGreedy(gguf)).toEqual(mine);
    });
  }

  it('bf16: llama.cpp loads the GGUF; the checkpoint copy has every tensor in BF16 and loads in dflash', async () => {
    const { gguf, copy16 } = convertTiny('qwen3-16', { family: 'qwen3' }, 'bf16', true);
    const header = readSafetensorsHeader(path.join(copy16!, 'model.safetensors'));
    const dtypes = new Set(Object.entries(header).filter(([k]) => k !== '__metadata__').map(([, v]) => (v as { dtype: string }).dtype));
    expect([...dtypes]).toEqual(['BF16']);
    expect(JSON.parse(fs.readFileSync(path.join(copy16!, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    // Different 16-bit arithmetic (llama.cpp rounds activations to bf16 too) may change
    // tokens, so only decoding itself is required here.
    expect((await llamaGreedy(gguf)).length).toBeGreaterThan(0);
    expect((await dflashGreedy(copy16!)).length).toBeGreaterThan(0);
  });

  it('names the culprit for a checkpoint it cannot convert', () => {
    const ckpt = path.join(dir, 'unsupported');
    makeTarget(ckpt, {});
    // The byte tokenizer as made: no merges.
    expect(() => convert(ckpt, path.join(dir, 'u.gguf'), 'f32')).toThrow(/tokenizer\.json: a BPE tokenizer without merges cannot be loaded by llama\.cpp/);
    addOneMerge(ckpt);
    const cfg = JSON.parse(fs.readFileSync(path.join(ckpt, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(ckpt, 'config.json'), JSON.stringify({ ...cfg, model_type: 'mistral' }));
    expect(() => convert(ckpt, path.join(dir, 'u.gguf'), 'f32')).toThrow(/config\.json: model_type 'mistral' is not supported \(accepted: qwen3, qwen2, llama\)/);
  });
});

function readSafetensorsHeader(file: string): Record<string, unknown> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
}
