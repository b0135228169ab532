// Tokenizer and chat template through maintained libraries: tokenizer.json via
// @huggingface/tokenizers (pure JS), chat templates via @huggingface/jinja (rendered as
// transformers does: trim_blocks, lstrip_blocks, raise_exception, special tokens in the context).
// IncrementalDetokenizer turns a growing list of token ids into text deltas that never split a
// UTF-8 character (byte-level BPE and SentencePiece byte-fallback alike).
import * as fs from 'fs';
import * as path from 'path';

// The packages ship CommonJS builds; require() keeps this module CommonJS-clean under tsc.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { Tokenizer: HFTokenizer } = require('@huggingface/tokenizers') as typeof import('@huggingface/tokenizers');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { Template } = require('@huggingface/jinja') as typeof import('@huggingface/jinja');

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn's opening (default true). */
  addGenerationPrompt?: boolean;
  /** Tool definitions, passed to the template as `tools`. */
  tools?: unknown[];
  /** More template variables (e.g. { enable_thinking: false } for Qwen3). */
  extra?: Record<string, unknown>;
}

export interface Tokenizer {
  /** Token ids of `text`; addSpecialTokens (default true) applies the post-processor (BOS...). */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids`; skipSpecialTokens defaults to true, cleanUpTokenizationSpaces to the
   *  tokenizer_config.json setting. decode([]) is ''. */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean; cleanUpTokenizationSpaces?: boolean }): string;
  /** The chat template rendered to text (without a template: "role: content" lines). */
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions): string;
  /** applyChatTemplate() encoded without adding special tokens again (as transformers does). */
  encodeChat(messages: ChatMessage[], options?: ChatTemplateOptions): number[];
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** EOS ids from tokenizer_config.json eos_token and generation_config.json eos_token_id. */
  readonly eosTokenIds: number[];
  readonly bosTokenId: number | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly hasChatTemplate: boolean;
  /** The chat template's source (undefined without one): what the server reads its tool-call format from. */
  readonly chatTemplate: string | undefined;
  /** Size of the vocabulary including added tokens (max id + 1). */
  readonly vocabSize: number;
}

type Json = Record<string, unknown>;

function readJson(file: string): Json | undefined {
  if (!fs.existsSync(file)) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file} is not a JSON object`);
  return v as Json;
}

/** A special token's text: a string or an AddedToken {content}; absent or null is null, any other
 *  value is an error naming the file and the key (not a token silently dropped). */
function tokenText(v: unknown, file: string, key: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  throw new Error(`${file}: '${key}' must be a token string or an object with a string "content", got ${JSON.stringify(v)}`);
}

/** The chat template source: chat_template.jinja, chat_template.json, then tokenizer_config.json
 *  (a string, or a list of {name, template} from which "default" is taken). */
function chatTemplateSource(dir: string, tc: Json): string | undefined {
  const jinja = path.join(dir, 'chat_template.jinja');
  if (fs.existsSync(jinja)) return fs.readFileSync(jinja, 'utf8');
  const ctFile = path.join(dir, 'chat_template.json');
  const fromFile = readJson(ctFile)?.chat_template;
  const file = fromFile !== undefined ? ctFile : path.join(dir, 'tokenizer_config.json');
  const ct = fromFile ?? tc.chat_template;
  if (ct === undefined || ct === null || typeof ct === 'string') return ct ?? undefined;
  const named = Array.isArray(ct) ? (ct as { name?: unknown; template?: unknown }[]) : [];
  const pick = named.find((t) => t?.name === 'default') ?? named[0];
  if (typeof pick?.template !== 'string')
    throw new Error(`${file}: 'chat_template' must be a template string or a list of {name, template}, got ${JSON.stringify(ct).slice(0, 80)}`);
  return pick.template;
}

/** Loads tokenizer.json (+ tokenizer_config.json, generation_config.json and a chat template
 *  when present) from `dir`. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tjFile = path.join(dir, 'tokenizer.json');
  const tj = readJson(tjFile);
  if (!tj) throw new Error(`no tokenizer.json in ${dir} (dflash reads Hugging Face "fast" tokenizers; convert a SentencePiece model with transformers first)`);
  const tcFile = path.join(dir, 'tokenizer_config.json');
  const tc = readJson(tcFile) ?? {};
  const gen = readJson(path.join(dir, 'generation_config.json')) ?? {};
  return tokenizerFromJson({ tokenizer: tj, config: tc, generation: gen, chatTemplate: chatTemplateSource(dir, tc) },
    { tokenizer: tjFile, config: tcFile, generation: path.join(dir, 'generation_config.json'), template: dir });
}

/** The parts of a Hugging Face tokenizer, as files hold them or as a GGUF's metadata gives them
 *  (lib/gguf-model.ts). */
export interface TokenizerParts {
  tokenizer: Json;                  // tokenizer.json
  config: Json;                     // tokenizer_config.json
  generation: Json;                 // generation_config.json
  chatTemplate: string | undefined;
}

/** A tokenizer from its parts; `where` names each part's source in errors. */
export function tokenizerFromJson(parts: TokenizerParts, where: { tokenizer: string; config: string; generation: string; template: string }): Tokenizer {
  const { tokenizer: tj, config: tc, generation: gen, chatTemplate: templateSrc } = parts;
  const tjFile = where.tokenizer, tcFile = where.config, dir = where.template;
  const model = tj.model as Json | undefined;
  if (!model || typeof model !== 'object') throw new Error(`${tjFile}: no "model" section; not a tokenizers tokenizer.json`);
  // The library guesses a model from its fields when the type is unknown; refuse instead.
  if (typeof model.type === 'string' && !['BPE', 'Unigram', 'WordPiece'].includes(model.type))
    throw new Error(`${tjFile}: @huggingface/tokenizers cannot load this tokenizer: model type ${JSON.stringify(model.type)} is not supported (BPE, Unigram, WordPiece)`);
  let tok: InstanceType<typeof HFTokenizer>;
  try {
    tok = new HFTokenizer(tj, tc);
  } catch (e) {
    const parts = (['normalizer', 'pre_tokenizer', 'decoder', 'post_processor'] as const)
      .map((k) => `${k} ${JSON.stringify((tj[k] as Json | null)?.type ?? null)}`).join(', ');
    throw new Error(`${tjFile}: @huggingface/tokenizers cannot load this tokenizer (model ${JSON.stringify(model.type)}, ${parts}): ${(e as Error).message}`);
  }

  const bosToken = tokenText(tc.bos_token, tcFile, 'bos_token');
  const eosToken = tokenText(tc.eos_token, tcFile, 'eos_token');
  const idOf = (t: string | null) => (t === null ? undefined : tok.token_to_id(t));
  const eos = new Set<number>();
  const eosId = idOf(eosToken);
  if (eosId !== undefined) eos.add(eosId);
  for (const id of [gen.eos_token_id ?? []].flat()) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0)
      throw new Error(`${where.generation}: 'eos_token_id' must be a token id or a list of token ids, got ${JSON.stringify(gen.eos_token_id)}`);
    eos.add(id);
  }
  const vocab = tok.get_vocab(true);
  let vocabSize = 0;
  for (const id of vocab.values()) vocabSize = Math.max(vocabSize, id + 1);

  let template: InstanceType<typeof Template> | undefined;
  if (templateSrc !== undefined) {
    try {
      template = new Template(templateSrc);
    } catch (e) {
      throw new Error(`${dir}: the chat template does not parse: ${(e as Error).message}`);
    }
  }
  const specials: Json = {};
  for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'sep_token', 'cls_token', 'mask_token']) {
    const t = tokenText(tc[k], tcFile, k);
    if (t !== null) specials[k] = t;
  }

  const api: Tokenizer = {
    encode: (text, o = {}) => tok.encode(text, { add_special_tokens: o.addSpecialTokens ?? true }).ids,
    decode: (ids, o = {}) => {
      if (ids.length === 0) return '';
      return tok.decode(ids as number[], {
        skip_special_tokens: o.skipSpecialTokens ?? true,
        ...(o.cleanUpTokenizationSpaces === undefined ? {} : { clean_up_tokenization_spaces: o.cleanUpTokenizationSpaces }),
      });
    },
    applyChatTemplate(messages, o = {}) {
      const addGen = o.addGenerationPrompt ?? true;
      if (!template) {
        // No template: plain "role: content" lines, then the assistant's turn.
        return messages.map((m) => `${m.role}: ${m.content}`).join('\n') + (addGen ? '\nassistant:' : '');
      }
      try {
        return template.render({
          bos_token: '', eos_token: '', ...specials, ...(o.extra ?? {}),
          messages, add_generation_prompt: addGen, ...(o.tools ? { tools: o.tools } : {}),
        });
      } catch (e) {
        throw new Error(`chat template of ${dir}: ${(e as Error).message}`);
      }
    },
    encodeChat(messages, o) {
      return api.encode(api.applyChatTemplate(messages, o), { addSpecialTokens: false });
    },
    tokenToId: (t) => tok.token_to_id(t),
    idToToken: (id) => tok.id_to_token(id),
    eosTokenIds: [...eos],
    bosTokenId: idOf(bosToken) ?? null,
    bosToken,
    eosToken,
    hasChatTemplate: template !== undefined,
    chatTemplate: template !== undefined ? templateSrc : undefined,
    vocabSize,
  };
  return api;
}

/**
 * Streams text for a growing token list. push() returns only the new text. Text is decoded over a
 * short window of ids (the tokens since the last point where everything decoded was complete,
 * plus the tokens before that as context, so SentencePiece's leading-space rules see what they
 * need): O(1) work per token, not O(length). A trailing run of U+FFFD - an incomplete UTF-8
 * character whose remaining bytes are still to come - is held back until the following tokens
 * complete it; the text before it is emitted at once. flush() returns what is left, including
 * replacement characters that never completed. Decoding skips special tokens and never applies
 * clean_up_tokenization_spaces (it would rewrite text already emitted).
 */
export class IncrementalDetokenizer {
  private ids: number[] = [];
  private prefixOffset = 0;  // start of the decode window
  private readOffset = 0;    // text of ids [prefixOffset, readOffset) has been emitted in full
  private extra = 0;         // characters emitted beyond that, from ids past readOffset

  constructor(
    private readonly tok: Pick<Tokenizer, 'decode'>,
    private readonly options: { skipSpecialTokens?: boolean } = {},
  ) {}

  private text(from: number, to: number): string {
    if (to <= from) return '';
    return this.tok.decode(this.ids.slice(from, to), { skipSpecialTokens: this.options.skipSpecialTokens ?? true, cleanUpTokenizationSpaces: false });
  }

  push(newIds: readonly number[]): string {
    for (const id of newIds) this.ids.push(id);
    const prefix = this.text(this.prefixOffset, this.readOffset);
    const full = this.text(this.prefixOffset, this.ids.length);
    let end = full.length;
    while (end > 0 && full.charCodeAt(end - 1) === 0xfffd) end--;
    const start = prefix.length + this.extra;
    const delta = end > start ? full.slice(start, end) : '';
    if (end === full.length && full.length > prefix.length) {
      // Everything decoded is complete: the window moves on.
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.extra = 0;
    } else {
      this.extra += delta.length;
    }
    return delta;
  }

  /** The rest, including replacement characters of bytes that never completed. */
  flush(): string {
    const prefix = this.text(this.prefixOffset, this.readOffset);
    const full = this.text(this.prefixOffset, this.ids.length);
    const start = prefix.length + this.extra;
    this.prefixOffset = this.readOffset = this.ids.length;
    this.extra = 0;
    return full.length > start ? full.slice(start) : '';
  }
}
