// Tokenizer (lib/tokenizer.ts) against goldens from Python `tokenizers` / `transformers`
// (test/fixtures/tokenizer, made by tools/fixtures/make_tokenizer_fixtures.py): a Qwen-style
// byte-level BPE and a Llama-2-style byte-fallback BPE. Encode / decode / chat templates must match
// the goldens exactly; the incremental detokenizer must stream multi-byte characters (CJK, emoji)
// split across tokens without ever emitting half a character, and add up to the full decode.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';

import { ChatMessage, IncrementalDetokenizer, loadTokenizer, Tokenizer } from '../lib/tokenizer';

const FIX = path.join(__dirname, 'fixtures', 'tokenizer');
const NAMES = ['bytelevel-bpe', 'bytefallback-bpe'] as const;
type Name = (typeof NAMES)[number];
interface Golden {
  encode: { text: string; ids: number[]; tokens: string[]; idsWithSpecial: number[]; decoded: string }[];
  chat: { messages: ChatMessage[]; extra: Record<string, unknown>; tools?: unknown[]; text: string; ids: number[] }[];
}
const GOLDEN = JSON.parse(fs.readFileSync(path.join(FIX, 'goldens.json'), 'utf8')) as Record<Name, Golden>;
const toks = {} as Record<Name, Tokenizer>;
beforeAll(async () => {
  for (const n of NAMES) toks[n] = await loadTokenizer(path.join(FIX, n));
});

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-tok-'));
function copyFixture(name: Name): string {
  const dir = tmp();
  for (const f of fs.readdirSync(path.join(FIX, name))) fs.copyFileSync(path.join(FIX, name, f), path.join(dir, f));
  return dir;
}
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe.each(NAMES)('%s: matches Python tokenizers / transformers', (name) => {
  const g = GOLDEN[name];

  it('encodes every sample to the same ids, with and without special tokens', () => {
    for (const e of g.encode) {
      expect(toks[name].encode(e.text, { addSpecialTokens: false }), e.text).toEqual(e.ids);
      expect(toks[name].encode(e.text), e.text).toEqual(e.idsWithSpecial);
    }
  });

  it('decodes to the same text', () => {
    for (const e of g.encode) expect(toks[name].decode(e.ids)).toBe(e.decoded);
    expect(toks[name].decode([])).toBe('');
  });

  it('renders the chat template as transformers does, and encodes it without doubling special tokens', () => {
    expect(toks[name].hasChatTemplate).toBe(true);
    for (const c of g.chat) {
      expect(toks[name].applyChatTemplate(c.messages, { extra: c.extra, tools: c.tools })).toBe(c.text);
      expect(toks[name].encodeChat(c.messages, { extra: c.extra, tools: c.tools })).toEqual(c.ids);
    }
  });
});

describe('special tokens and template variables', () => {
  it('reads EOS from tokenizer_config.json and generation_config.json, BOS from tokenizer_config.json', () => {
    const q = toks['bytelevel-bpe'];
    expect(q.eosToken).toBe('<|im_end|>');
    expect(q.eosTokenIds.sort()).toEqual([q.tokenToId('<|endoftext|>'), q.tokenToId('<|im_end|>')].sort());
    expect(q.bosTokenId).toBeNull();
    const l = toks['bytefallback-bpe'];
    expect([l.bosToken, l.bosTokenId, l.eosTokenIds]).toEqual(['<s>', 1, [2]]);
    expect(l.idToToken(3 + 0xe6)).toBe('<0xE6>');
    expect(q.vocabSize).toBe(678);
  });

  it('the byte-fallback template puts BOS in the text, so encodeChat has exactly one', () => {
    const ids = toks['bytefallback-bpe'].encodeChat([{ role: 'user', content: 'hi' }]);
    expect(ids[0]).toBe(1);
    expect(ids.filter((i) => i === 1)).toHaveLength(1);
    expect(toks['bytefallback-bpe'].encode(toks['bytefallback-bpe'].applyChatTemplate([{ role: 'user', content: 'hi' }])).slice(0, 2)).toEqual([1, 1]);
  });

  it('addGenerationPrompt: false leaves the assistant turn closed', () => {
    const t = toks['bytelevel-bpe'].applyChatTemplate([{ role: 'user', content: 'x' }], { addGenerationPrompt: false });
    expect(t).toBe('<|im_start|>user\nx<|im_end|>\n');
  });

  it("raise_exception in a template is an error naming the template's directory", () => {
    expect(() => toks['bytelevel-bpe'].applyChatTemplate([{ role: 'robot', content: 'x' }])).toThrow(/chat template of .*bytelevel-bpe: .*unknown role robot/);
  });
});

describe('loading: template sources and errors', () => {
  it('prefers chat_template.jinja, accepts a list of named templates, and falls back without one', async () => {
    let dir = copyFixture('bytelevel-bpe');
    fs.writeFileSync(path.join(dir, 'chat_template.jinja'), '{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}');
    expect((await loadTokenizer(dir)).applyChatTemplate([{ role: 'user', content: 'a' }])).toBe('[user] a');
    dir = copyFixture('bytelevel-bpe');
    const tc = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    tc.chat_template = [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D{{ messages | length }}' }];
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tc));
    expect((await loadTokenizer(dir)).applyChatTemplate([{ role: 'user', content: 'a' }])).toBe('D1');
    delete tc.chat_template;
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tc));
    const plain = await loadTokenizer(dir);
    expect(plain.hasChatTemplate).toBe(false);
    expect(plain.applyChatTemplate([{ role: 'system', content: 's' }, { role: 'user', content: 'u' }])).toBe('system: s\nuser: u\nassistant:');
  });

  it('missing, unreadable and unsupported tokenizers are clear errors', async () => {
    await expect(loadTokenizer(tmp())).rejects.toThrow(/no tokenizer\.json in /);
    const dir = copyFixture('bytelevel-bpe');
    const tjFile = path.join(dir, 'tokenizer.json');
    const tj = JSON.parse(fs.readFileSync(tjFile, 'utf8'));
    fs.writeFileSync(tjFile, JSON.stringify({ ...tj, model: { ...tj.model, type: 'WordLevel' } }));
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer\.json: @huggingface\/tokenizers cannot load this tokenizer: model type "WordLevel" is not supported/);
    fs.writeFileSync(tjFile, JSON.stringify({ ...tj, decoder: { type: 'Mystery' } }));
    await expect(loadTokenizer(dir)).rejects.toThrow(/cannot load this tokenizer \(model "BPE", normalizer "NFC", pre_tokenizer "Sequence", decoder "Mystery", post_processor "ByteLevel"\): Unknown Decoder type: Mystery/);
    fs.writeFileSync(tjFile, JSON.stringify({ ...tj, model: undefined }));
    await expect(loadTokenizer(dir)).rejects.toThrow(/no "model" section/);
    fs.writeFileSync(tjFile, '{ not json');
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer\.json is not valid JSON/);
    const dir2 = copyFixture('bytelevel-bpe');
    fs.writeFileSync(path.join(dir2, 'chat_template.jinja'), '{% for m in messages %}{{ m.content }');
    await expect(loadTokenizer(dir2)).rejects.toThrow(/chat template does not parse/);
  });
});

/** Pushes ids in the given group sizes; returns the chunks. */
function stream(tok: Pick<Tokenizer, 'decode'>, ids: number[], sizes: (i: number) => number = () => 1): { chunks: string[]; rest: string } {
  const d = new IncrementalDetokenizer(tok);
  const chunks: string[] = [];
  for (let i = 0, k = 0; i < ids.length; k++) {
    const n = Math.max(1, sizes(k));
    chunks.push(d.push(ids.slice(i, i + n)));
    i += n;
  }
  return { chunks, rest: d.flush() };
}

describe('IncrementalDetokenizer', () => {
  const idsOf = (name: Name, text: string) => GOLDEN[name].encode.find((e) => e.text === text)!.ids;
  const EMOJI = 'Emoji 😀🚀🎉👍 and 🦀 (a rare one) and 🧪';
  const CJK = '日本語のテキスト、中文文本，한국어';

  it('byte-level BPE: holds back tokens that end mid-character, emits the text before them', () => {
    const { chunks, rest } = stream(toks['bytelevel-bpe'], idsOf('bytelevel-bpe', EMOJI));
    // tokens: Emoji | Ġ😀 | 🚀 | F0 9F | (🎉 rest) | F0 9F | (👍 rest) | Ġand | Ġ F0 9F | A6 | 80 | Ġ ...
    expect(chunks.slice(0, 12)).toEqual(['Emoji', ' 😀', '🚀', '', '🎉', '', '👍', ' and', ' ', '', '🦀', ' ']);
    expect(chunks.slice(-3)).toEqual([' ', '', '🧪']);
    expect(chunks.join('') + rest).toBe(EMOJI);
    expect(rest).toBe('');
  });

  it('byte-level BPE: CJK characters split across merged tokens', () => {
    const { chunks } = stream(toks['bytelevel-bpe'], idsOf('bytelevel-bpe', CJK));
    expect(chunks).toEqual(['日本語のテ', 'キ', 'スト', '', '、', '中文文本', '', '', '，', '한국어']);
  });

  it('SentencePiece byte fallback: <0xXX> tokens become one character when the last byte arrives', () => {
    const { chunks } = stream(toks['bytefallback-bpe'], idsOf('bytefallback-bpe', EMOJI));
    // ▁ E m o j i ▁ <F0> <9F> <98> <80> <F0> <9F> <9A> <80> ...
    expect(chunks.slice(0, 15)).toEqual(['', 'E', 'm', 'o', 'j', 'i', ' ', '', '', '', '😀', '', '', '', '🚀']);
    const words = stream(toks['bytefallback-bpe'], idsOf('bytefallback-bpe', 'Café naïve Ünïcödé — résumé')).chunks;
    expect(words).toEqual(['Caf', 'é', ' naï', 've', ' Ünïcödé', ' —', ' résum', 'é']);  // word-initial spaces kept
  });

  it.each(NAMES)('%s: every sample, one id at a time and in uneven groups, adds up to the decode; no chunk holds half a character', (name) => {
    for (const e of GOLDEN[name].encode) {
      for (const sizes of [() => 1, (k: number) => (k * 7) % 4 + 1, () => 1000]) {
        const { chunks, rest } = stream(toks[name], e.ids, sizes);
        expect(chunks.join('') + rest, e.text).toBe(e.decoded);
        for (const c of chunks) {
          expect(c).not.toContain('\ufffd');
          expect(c).not.toMatch(LONE_SURROGATE);
        }
      }
    }
  });

  it('skips special tokens and flushes an unfinished character as U+FFFD', () => {
    const q = toks['bytelevel-bpe'];
    const d = new IncrementalDetokenizer(q);
    expect(d.push(q.encode('hi', { addSpecialTokens: false }))).toBe('hi');
    expect(d.push([q.tokenToId('<|im_end|>')!])).toBe('');
    expect(d.push([q.tokenToId('ðŁ')!])).toBe('');   // F0 9F: the start of an emoji
    expect(d.flush()).toBe('\ufffd');
    expect(d.flush()).toBe('');
  });

  it('never applies clean_up_tokenization_spaces, which would rewrite text already emitted', async () => {
    const dir = copyFixture('bytelevel-bpe');
    const tc = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ ...tc, clean_up_tokenization_spaces: true }));
    const t = await loadTokenizer(dir);
    const ids = ['a', 'Ġ', '.', 'Ġ', ',', 'b'].map((x) => t.tokenToId(x)!);
    expect(t.decode(ids)).toBe('a.,b');  // the tokenizer's own setting: " ." -> ".", " ," -> ","
    const { chunks, rest } = stream(t, ids);
    expect(chunks).toEqual(['a', ' ', '.', ' ', ',', 'b']);
    expect(chunks.join('') + rest).toBe(t.decode(ids, { cleanUpTokenizationSpaces: false }));
  });

  it('an invalid byte that can never complete is emitted once text follows it', () => {
    const l = toks['bytefallback-bpe'];
    const d = new IncrementalDetokenizer(l);
    const a = l.encode('a', { addSpecialTokens: false });
    expect(d.push(a)).toBe('a');
    expect(d.push([3 + 0x80])).toBe('');               // a lone continuation byte
    expect(d.push(l.encode('b', { addSpecialTokens: false }))).toBe('\ufffd b');
  });

  it('decodes a bounded window per push (O(1) per token), however long the stream', () => {
    const q = toks['bytelevel-bpe'];
    const text = GOLDEN['bytelevel-bpe'].encode.map((e) => e.text).join(' ').repeat(20);
    const ids = q.encode(text, { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(2000);
    let widest = 0;
    const counting = { decode: (w: readonly number[], o?: Parameters<Tokenizer['decode']>[1]) => { widest = Math.max(widest, w.length); return q.decode(w, o); } };
    const { chunks, rest } = stream(counting, ids);
    expect(chunks.join('') + rest).toBe(q.decode(ids));  // special tokens in the text are skipped
    expect(widest).toBeLessThanOrEqual(8);
  });
});
