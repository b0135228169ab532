// Tokenizer and chat template through maintained libraries: tokenizer.json via
// @huggingface/tokenizers, chat_template via @huggingface/jinja. IncrementalDetokenizer turns a
// growing list of token ids into text deltas that never split a UTF-8 character.
import * as fs from 'fs';
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { Tokenizer: HFTokenizer } = require('@huggingface/tokenizers') as typeof import('@huggingface/tokenizers');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { Template } = require('@huggingface/jinja') as typeof import('@huggingface/jinja');

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

export interface Tokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
  applyChatTemplate(messages: ChatMessage[]): string;
  readonly eosTokenIds: number[];
  readonly hasChatTemplate: boolean;
}

function readJson(file: string): Record<string, unknown> | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** Loads tokenizer.json (+ tokenizer_config.json, generation_config.json when present) from `dir`. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tjFile = path.join(dir, 'tokenizer.json');
  const tj = readJson(tjFile);
  if (!tj) throw new Error(`no tokenizer.json in ${dir}`);
  const tc = readJson(path.join(dir, 'tokenizer_config.json')) ?? {};
  const gen = readJson(path.join(dir, 'generation_config.json')) ?? {};
  let tok: InstanceType<typeof HFTokenizer>;
  try {
    tok = new HFTokenizer(tj, tc);
  } catch (e) {
    throw new Error(`${tjFile}: cannot load tokenizer: ${(e as Error).message}`);
  }
  const eos = new Set<number>();
  const eosText = tokenText(tc.eos_token);
  if (eosText !== undefined) {
    const id = tok.token_to_id(eosText);
    if (id !== undefined) eos.add(id);
  }
  for (const id of [gen.eos_token_id].flat()) if (typeof id === 'number') eos.add(id);
  const templateSrc = typeof tc.chat_template === 'string' ? tc.chat_template : undefined;
  const template = templateSrc ? new Template(templateSrc) : undefined;
  return {
    encode: (text, o = {}) => tok.encode(text, { add_special_tokens: o.addSpecialTokens ?? true }).ids,
    decode: (ids, o = {}) => tok.decode(ids, { skip_special_tokens: o.skipSpecialTokens ?? true }),
    applyChatTemplate(messages) {
      if (!template) {
        // No template: plain "role: content" lines, then the assistant's turn.
        return messages.map((m) => `${m.role}: ${m.content}`).join('\n') + '\nassistant:';
      }
      return template.render({
        messages, add_generation_prompt: true,
        bos_token: tokenText(tc.bos_token) ?? '', eos_token: eosText ?? '',
      });
    },
    eosTokenIds: [...eos],
    hasChatTemplate: template !== undefined,
  };
}

/**
 * Streams text for a growing token list. Each push() returns only the new text; text that ends
 * in an incomplete UTF-8 sequence (decoded as U+FFFD) is held back until the following tokens
 * complete it, so a streamed chunk never contains half a character. Only a short window of ids
 * is decoded per call (the tokens since the last complete character, plus the few before them
 * as context), so streaming costs O(1) per token, not O(length).
 */
export class IncrementalDetokenizer {
  private ids: number[] = [];
  private prefixOffset = 0;  // start of the decode window (already-emitted context)
  private readOffset = 0;    // ids before this have been emitted

  constructor(private readonly tok: Pick<Tokenizer, 'decode'>) {}

  private text(from: number, to: number): string {
    return to > from ? this.tok.decode(this.ids.slice(from, to)) : '';
  }

  push(newIds: number[]): string {
    this.ids.push(...newIds);
    const prefix = this.text(this.prefixOffset, this.readOffset);
    const full = this.text(this.prefixOffset, this.ids.length);
    if (full.length <= prefix.length || full.endsWith('\ufffd')) return '';
    // Window ends on a complete character: emit what follows the already-emitted prefix.
    const delta = full.slice(prefix.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return delta;
  }

  /** The rest, including any replacement characters that never completed. */
  flush(): string {
    const prefix = this.text(this.prefixOffset, this.readOffset);
    const full = this.text(this.prefixOffset, this.ids.length);
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}
