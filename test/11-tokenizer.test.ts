// Tokenizer and chat template through @huggingface/tokenizers and @huggingface/jinja, on the
// shipped byte-level BPE (models/code-pair) and the fixtures' byte tokenizer; incremental
// detokenization that never splits a UTF-8 character and adds up to the full decode.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { IncrementalDetokenizer, loadTokenizer } from '../lib/tokenizer';
import { tmpDir } from './helpers/tiny-model';

const PAIR = path.join(__dirname, '..', 'models', 'code-pair', 'target');
const FIX = path.join(__dirname, 'fixtures', 'models', 'qwen3-f32');

describe('loadTokenizer', () => {
  it('round-trips text and reads EOS from tokenizer_config.json', async () => {
    const tok = await loadTokenizer(PAIR);
    const text = 'def add(a, b):\n    return a + b\n';
    const ids = tok.encode(text);
    expect(ids.length).toBeLessThan(text.length);  // real BPE merges
    expect(tok.decode(ids)).toBe(text);
    expect(tok.eosTokenIds).toEqual([0]);           // <|endoftext|>
  });

  it('renders the chat template with jinja', async () => {
    const pair = await loadTokenizer(PAIR);
    // transformers renders chat templates with trim_blocks: the newline right after `%}` goes.
    expect(pair.applyChatTemplate([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }])).toBe('ab');
    const fix = await loadTokenizer(FIX);
    expect(fix.hasChatTemplate).toBe(true);
    expect(fix.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe('<|user|>hi\n<|assistant|>');
  });

  it('a directory without tokenizer.json is a clear error', async () => {
    await expect(loadTokenizer(tmpDir())).rejects.toThrow(/no tokenizer\.json in/);
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{ not json');
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer\.json is not valid JSON/);
  });
});

describe('IncrementalDetokenizer', () => {
  it('streams chunks that add up to the full decode and never split a character', async () => {
    const tok = await loadTokenizer(PAIR);
    const text = 'def f(x):\n    """Ünïcödé — 日本語 😀 text"""\n    return x  # ok\n\n'.repeat(3);
    const ids = tok.encode(text, { addSpecialTokens: false });
    const d = new IncrementalDetokenizer(tok);
    let out = '';
    for (const id of ids) {
      const chunk = d.push([id]);
      expect(chunk).not.toContain('\ufffd');
      out += chunk;
    }
    out += d.flush();
    expect(out).toBe(tok.decode(ids));
    expect(out).toBe(text);
  });

  it('holds back the bytes of a character split across tokens', async () => {
    const tok = await loadTokenizer(FIX);  // byte-level: one token per byte
    const d = new IncrementalDetokenizer(tok);
    expect([[0x61], [0xe2], [0x82], [0xac], [0x62], [0xf0, 0x9f], [0x98], [0x80]].map((x) => d.push(x)))
      .toEqual(['a', '', '', '€', 'b', '', '', '😀']);
    expect(d.push([0xe2])).toBe('');
    expect(d.flush()).toBe('\ufffd');  // an incomplete character at the very end is flushed as is
  });
});
