// A gpt-oss fixture that speaks harmony: test/fixtures/models/gpt-oss-f32 (random weights, a
// 256-entry byte tokenizer) with the harmony special tokens added after the bytes, embedding and
// head rows for them, and <|return|> / <|call|> as EOS, as the released gpt-oss checkpoints'
// generation_config.json has them. Real ids are 200002.. in o200k_harmony; the server finds
// them by name, so any ids work.
import * as fs from 'fs';
import * as path from 'path';

import { readSafetensorsHeader, TensorToWrite, writeSafetensors } from '../../lib/safetensors';
import { copyModel, MODELS } from './checkpoint-edit';

export const HARMONY_TOKENS = ['<|return|>', '<|constrain|>', '<|channel|>', '<|start|>', '<|end|>', '<|message|>', '<|call|>', '<|endoftext|>'];

/** Writes the fixture into `dir` (created) and returns it. */
export function harmonyModel(dir: string): string {
  copyModel(path.join(MODELS, 'gpt-oss-f32'), dir);
  const base = 256, vocab = base + HARMONY_TOKENS.length;
  const file = path.join(dir, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.2;
  const tensors: TensorToWrite[] = readSafetensorsHeader(file).map((t) => {
    const data = bytes.subarray(t.offset, t.offset + t.nbytes);
    if (t.name !== 'model.embed_tokens.weight' && t.name !== 'lm_head.weight') return { name: t.name, dtype: t.dtype as 'F32', shape: t.shape, data };
    const grown = new Float32Array(vocab * t.shape[1]);
    grown.set(new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
    for (let i = base * t.shape[1]; i < grown.length; i++) grown[i] = rand();
    return { name: t.name, dtype: 'F32', shape: [vocab, t.shape[1]], data: grown };
  });
  writeSafetensors(file, tensors);
  const edit = (name: string, f: (j: Record<string, unknown>) => void) => {
    const p = path.join(dir, name);
    const j = JSON.parse(fs.readFileSync(p, 'utf8')) as Record<string, unknown>;
    f(j);
    fs.writeFileSync(p, JSON.stringify(j));
  };
  const id = (t: string) => base + HARMONY_TOKENS.indexOf(t);
  edit('config.json', (j) => { j.vocab_size = vocab; j.eos_token_id = [id('<|return|>'), id('<|call|>')]; });
  edit('generation_config.json', (j) => { j.eos_token_id = [id('<|return|>'), id('<|call|>'), id('<|endoftext|>')]; });
  edit('tokenizer.json', (j) => {
    j.added_tokens = HARMONY_TOKENS.map((content, i) => ({ id: base + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  });
  edit('tokenizer_config.json', (j) => { delete j.chat_template; j.eos_token = '<|return|>'; });
  return dir;
}
