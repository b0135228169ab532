// A GGUF file as the engine loads a Hugging Face checkpoint: the config.json its metadata
// describes (llama, qwen2, qwen3), its tensors under their transformers names (shapes reversed
// from GGUF's innermost-first order; Llama's q/k rows marked for llama.cpp's RoPE reordering to be
// undone by the native loader), and its tokenizer (GPT-2-style byte-level BPE: vocabulary, merges,
// special tokens, pre-tokenizer, chat template) as the tokenizer.json it was made from.
// Metadata keys are llama.cpp's (gguf-py constants.py Keys); anything the engine would run
// differently from llama.cpp is refused, naming the key or tensor.
//
// DFlash drafters in llama.cpp's layout (architecture "dflash", upstream's DFlashModel converter):
// dflash.block_size, dflash.target_layers (the HF target_layer_ids + 1: llama.cpp taps layer
// inputs), tokenizer.ggml.mask_token_id, tensors fc / enc.output_norm (HF hidden_norm) /
// output_norm / blk.N.* in Qwen3's names, q/k rows not reordered, and no token_embd / output
// (the target's are shared).
import type { TensorSource } from './native';
import { GGUF_LOADABLE_TYPES, GgufHeader, GgufValue, readGgufHeader } from './gguf';
import type { TokenizerParts } from './tokenizer';

type Json = Record<string, unknown>;

/** GGUF architectures the engine runs, with their transformers class and whether llama.cpp's
 *  converter reordered q/k rows for interleaved-pair RoPE (Llama does; Qwen uses NEOX rotation). */
const ARCHES: Record<string, { architecture: string; modelType: string; ropeRows: boolean }> = {
  llama: { architecture: 'LlamaForCausalLM', modelType: 'llama', ropeRows: true },
  qwen2: { architecture: 'Qwen2ForCausalLM', modelType: 'qwen2', ropeRows: false },
  qwen3: { architecture: 'Qwen3ForCausalLM', modelType: 'qwen3', ropeRows: false },
};

/** GGUF tensor names -> transformers names (blk.N. -> model.layers.N.). */
const GLOBAL_NAMES: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
};
const LAYER_NAMES: Record<string, string> = {
  attn_norm: 'input_layernorm', attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj', attn_q_norm: 'self_attn.q_norm', attn_k_norm: 'self_attn.k_norm',
  ffn_norm: 'post_attention_layernorm', ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj',
};

/** Pre-tokenizers by tokenizer.ggml.pre (llama.cpp's llama-vocab.cpp names), as tokenizer.json spells them. */
const BYTE_LEVEL = (useRegex: boolean) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
const split = (regex: string) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });
const QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const PRE_TOKENIZERS: Record<string, Json> = {
  'default': BYTE_LEVEL(true), 'gpt-2': BYTE_LEVEL(true),
  // StarCoder-style: every digit alone, then GPT-2's split (SmolLM, SmolLM2).
  'smollm': { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, BYTE_LEVEL(true)] },
  'starcoder': { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, BYTE_LEVEL(true)] },
  'refact': { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, BYTE_LEVEL(true)] },
  'qwen2': { type: 'Sequence', pretokenizers: [split(QWEN2_SPLIT), BYTE_LEVEL(false)] },
  'llama-bpe': { type: 'Sequence', pretokenizers: [split(LLAMA3_SPLIT), BYTE_LEVEL(false)] },
};

// llama.cpp's token types (gguf-py TokenType).
const CONTROL = 3, USER_DEFINED = 4;

export interface GgufCheckpoint {
  header: GgufHeader;
  /** The config.json this file's metadata describes (what lib/config.ts reads). */
  config: Json;
  tensors: TensorSource[];
  tokenizer: TokenizerParts;
}

class Meta {
  constructor(private readonly h: GgufHeader) {}
  fail(key: string, msg: string): never {
    throw new Error(`${this.h.file}: GGUF metadata ${key} ${msg}`);
  }
  get(key: string): GgufValue | undefined {
    return this.h.metadata.get(key);
  }
  num(key: string, fallback?: number): number {
    const v = this.get(key);
    if (v === undefined) {
      if (fallback === undefined) this.fail(key, 'is missing');
      return fallback;
    }
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n)) this.fail(key, `must be a number, got ${JSON.stringify(String(v))}`);
    return n;
  }
  str(key: string, fallback?: string): string {
    const v = this.get(key);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string') this.fail(key, v === undefined ? 'is missing' : 'must be a string');
    return v;
  }
  list<T>(key: string, kind: 'string' | 'number'): T[] {
    const v = this.get(key);
    if (!Array.isArray(v) || v.some((x) => typeof x !== kind)) this.fail(key, `must be an array of ${kind}s`);
    return v as T[];
  }
}

/** The engine's view of a GGUF file: see the file comment. */
export function readGgufCheckpoint(file: string): GgufCheckpoint {
  const header = readGgufHeader(file);
  const m = new Meta(header);
  const archName = m.str('general.architecture');
  const arch = ARCHES[archName];
  if (!arch) m.fail('general.architecture', `is "${archName}"; dflash loads GGUF files of the ${Object.keys(ARCHES).join(', ')} architectures`);
  const k = (key: string) => `${archName}.${key}`;
  const names = new Set(header.tensors.map((t) => t.name));
  if (names.has('rope_freqs.weight'))
    throw new Error(`${file}: tensor rope_freqs.weight (Llama 3.1-style RoPE frequency factors) is not supported from GGUF yet; load the Hugging Face checkpoint`);
  const scaling = m.str(k('rope.scaling.type'), 'none');
  if (scaling !== 'none') m.fail(k('rope.scaling.type'), `is "${scaling}"; RoPE scaling is not supported from GGUF yet`);
  if (m.get(k('expert_count')) !== undefined) m.fail(k('expert_count'), 'is set: mixture-of-experts GGUF files are not supported yet');

  const hidden = m.num(k('embedding_length'));
  const heads = m.num(k('attention.head_count'));
  const kvHeads = m.num(k('attention.head_count_kv'), heads);
  const headDim = m.num(k('attention.key_length'), hidden / heads);
  if (m.num(k('attention.value_length'), headDim) !== headDim) m.fail(k('attention.value_length'), `must equal the key length ${headDim}`);
  if (m.num(k('rope.dimension_count'), headDim) !== headDim)
    m.fail(k('rope.dimension_count'), `is ${m.num(k('rope.dimension_count'))}: partial rotary embeddings (head dim ${headDim}) are not supported`);
  const embed = header.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embed) throw new Error(`${file}: no token_embd.weight tensor`);
  const vocabSize = m.num(k('vocab_size'), embed.dims[1]);
  const tied = !names.has('output.weight');
  const eos = [m.get('tokenizer.ggml.eos_token_id'), m.get('tokenizer.ggml.eot_token_id')].filter((v): v is number => typeof v === 'number');
  const bos = m.get('tokenizer.ggml.bos_token_id');
  const config: Json = {
    architectures: [arch.architecture],
    model_type: arch.modelType,
    hidden_size: hidden,
    intermediate_size: m.num(k('feed_forward_length')),
    num_hidden_layers: m.num(k('block_count')),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    rms_norm_eps: m.num(k('attention.layer_norm_rms_epsilon')),
    rope_theta: m.num(k('rope.freq_base'), 10000),
    max_position_embeddings: m.num(k('context_length')),
    vocab_size: vocabSize,
    tie_word_embeddings: tied,
    // Llama with biases on its projections (Qwen2 has q/k/v biases by definition).
    attention_bias: archName !== 'qwen2' && names.has('blk.0.attn_q.bias'),
    torch_dtype: 'float32',
    eos_token_id: [...new Set(eos)],
    bos_token_id: typeof bos === 'number' ? bos : null,
  };

  const tensors: TensorSource[] = header.tensors.map((t) => {
    if (!GGUF_LOADABLE_TYPES.has(t.type))
      throw new Error(`${file}: tensor ${t.name} is ${t.type}; dflash loads GGUF tensors of types ${[...GGUF_LOADABLE_TYPES].join(', ')}`);
    const name = hfName(t.name);
    const ropeHeads = arch.ropeRows && /self_attn\.(q|k)_proj\./.test(name) ? (name.includes('.q_proj.') ? heads : kvHeads) : 0;
    return {
      name, file, offset: t.offset, nbytes: t.nbytes, dtype: t.type, shape: [...t.dims].reverse(), dataStart: header.dataStart,
      ...(ropeHeads ? { ropeHeads } : {}),
    };
  });
  return { header, config, tensors, tokenizer: ggufTokenizer(m) };
}

export interface GgufDrafter {
  header: GgufHeader;
  /** The z-lab config.json this file's metadata describes (what lib/config.ts reads). */
  config: Json;
  tensors: TensorSource[];
}

/** A DFlash drafter GGUF (llama.cpp's "dflash" architecture): see the file comment. */
export function readGgufDrafter(file: string): GgufDrafter {
  const header = readGgufHeader(file);
  const m = new Meta(header);
  const arch = m.str('general.architecture');
  if (arch !== 'dflash')
    m.fail('general.architecture', `is "${arch}"; a drafter GGUF is llama.cpp's "dflash" architecture` +
      (arch === 'dflash-draft' ? ' (ik_llama.cpp\'s "dflash-draft" layout is not read)' : ''));
  const names = new Set(header.tensors.map((t) => t.name));
  if (names.has('selector_hidden.weight')) throw new Error(`${file}: a DFlash2 drafter GGUF (selector tensors) is not read yet; load its Hugging Face directory`);
  if (m.get('dflash.attention.sliding_window') !== undefined)
    m.fail('dflash.attention.sliding_window', 'is set: sliding-window drafter GGUFs are not read yet; load the Hugging Face directory');
  const hidden = m.num('dflash.embedding_length');
  const heads = m.num('dflash.attention.head_count');
  const layers = m.list<number>('dflash.target_layers', 'number');
  if (layers.some((l) => !Number.isInteger(l) || l < 1)) m.fail('dflash.target_layers', `must be layer numbers >= 1 (target layer id + 1), got ${JSON.stringify(layers)}`);
  const mask = m.num('tokenizer.ggml.mask_token_id');
  const config: Json = {
    architectures: ['DFlashDraftModel'],
    model_type: 'qwen3',
    block_size: m.num('dflash.block_size', 16),
    dflash_config: { mask_token_id: mask, target_layer_ids: layers.map((l) => l - 1) },
    hidden_size: hidden,
    intermediate_size: m.num('dflash.feed_forward_length'),
    num_hidden_layers: m.num('dflash.block_count'),
    num_attention_heads: heads,
    num_key_value_heads: m.num('dflash.attention.head_count_kv', heads),
    head_dim: m.num('dflash.attention.key_length', hidden / heads),
    rms_norm_eps: m.num('dflash.attention.layer_norm_rms_epsilon'),
    rope_theta: m.num('dflash.rope.freq_base', 10000),
    max_position_embeddings: m.num('dflash.context_length', 32768),
    torch_dtype: 'float32',
  };
  const drafterNames: Record<string, string> = { 'fc.weight': 'fc.weight', 'enc.output_norm.weight': 'hidden_norm.weight', 'output_norm.weight': 'norm.weight' };
  const tensors: TensorSource[] = header.tensors.map((t) => {
    if (!GGUF_LOADABLE_TYPES.has(t.type))
      throw new Error(`${file}: tensor ${t.name} is ${t.type}; dflash loads GGUF tensors of types ${[...GGUF_LOADABLE_TYPES].join(', ')}`);
    const name = drafterNames[t.name] ?? hfName(t.name).replace(/^model\./, '');
    return { name, file, offset: t.offset, nbytes: t.nbytes, dtype: t.type, shape: [...t.dims].reverse(), dataStart: header.dataStart };
  });
  return { header, config, tensors };
}

function hfName(gguf: string): string {
  if (GLOBAL_NAMES[gguf]) return GLOBAL_NAMES[gguf];
  const mm = /^blk\.(\d+)\.([a-z_0-9]+)\.(weight|bias)$/.exec(gguf);
  if (mm && LAYER_NAMES[mm[2]]) return `model.layers.${mm[1]}.${LAYER_NAMES[mm[2]]}.${mm[3]}`;
  return gguf;  // unknown: the loader reports it as unused (a warning naming it)
}

/** tokenizer.json, tokenizer_config.json and generation_config.json as the GGUF's tokenizer.* keys describe them. */
function ggufTokenizer(m: Meta): TokenizerParts {
  const model = m.str('tokenizer.ggml.model');
  if (model !== 'gpt2')
    m.fail('tokenizer.ggml.model', `is "${model}"; dflash reads byte-level BPE ("gpt2") tokenizers from GGUF (SentencePiece "llama" ones are not supported yet)`);
  const pre = m.str('tokenizer.ggml.pre', 'default');
  const preTokenizer = PRE_TOKENIZERS[pre];
  if (!preTokenizer) m.fail('tokenizer.ggml.pre', `is "${pre}"; dflash knows the pre-tokenizers ${Object.keys(PRE_TOKENIZERS).join(', ')}`);
  const tokens = m.list<string>('tokenizer.ggml.tokens', 'string');
  const types = m.get('tokenizer.ggml.token_type') === undefined ? [] : m.list<number>('tokenizer.ggml.token_type', 'number');
  const merges = m.list<string>('tokenizer.ggml.merges', 'string');
  const vocab: Record<string, number> = {};
  const added: Json[] = [];
  tokens.forEach((t, id) => {
    if (!(t in vocab)) vocab[t] = id;
    if (types[id] === CONTROL || types[id] === USER_DEFINED)
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[id] === CONTROL });
  });
  const id = (key: string) => {
    const v = m.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= tokens.length) m.fail(key, `is not a token id of the ${tokens.length}-token vocabulary`);
    return v;
  };
  const bos = id('tokenizer.ggml.bos_token_id'), eos = id('tokenizer.ggml.eos_token_id'), eot = id('tokenizer.ggml.eot_token_id');
  const unk = id('tokenizer.ggml.unknown_token_id'), pad = id('tokenizer.ggml.padding_token_id');
  const addBos = m.get('tokenizer.ggml.add_bos_token') === true && bos !== undefined;
  const text = (i: number | undefined) => (i === undefined ? undefined : tokens[i]);
  const tokenizer: Json = {
    // Qwen2's tokenizer.json normalizes to NFC before splitting; the others have no normalizer.
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: pre === 'qwen2' ? { type: 'NFC' } : null,
    pre_tokenizer: preTokenizer,
    post_processor: addBos
      ? { type: 'TemplateProcessing', single: [{ SpecialToken: { id: tokens[bos!], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: tokens[bos!], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { [tokens[bos!]]: { id: tokens[bos!], ids: [bos], tokens: [tokens[bos!]] } } }
      : null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
  const config: Json = { clean_up_tokenization_spaces: false, add_bos_token: addBos };
  for (const [key, v] of [['bos_token', text(bos)], ['eos_token', text(eos)], ['unk_token', text(unk)], ['pad_token', text(pad)]] as const)
    if (v !== undefined) config[key] = v;
  const generation: Json = { eos_token_id: [...new Set([eos, eot].filter((x): x is number => x !== undefined))] };
  const template = m.get('tokenizer.chat_template');
  return { tokenizer, config, generation, chatTemplate: typeof template === 'string' ? template : undefined };
}
