// Random-weight checkpoints at the published shapes (Qwen3-0.6B, Qwen3-4B and its DFlash drafter),
// written tensor by tensor straight to disk — never the whole model in memory — for memory and
// speed measurements at real scale (test/40-real-scale, bench/shapes.ts). Values are bf16 (or f32)
// of magnitude ~0.004-0.03 with random signs; norm weights are 1. The tokenizer is byte-level
// with the vocabulary padded to the model's size. Nothing here is trained: outputs are noise.
//   npx vite-node tools/shapes/make-random.ts -- --shape qwen3-0.6b|qwen3-4b --out DIR [--drafter DIR] [--dtype bf16|f32]
import * as fs from 'fs';
import * as path from 'path';

export interface Shape {
  name: string;
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  tie: boolean;
  maxPositions: number;
}

export const SHAPES: Record<string, Shape> = {
  'qwen3-0.6b': { name: 'Qwen3-0.6B', vocab: 151936, hidden: 1024, intermediate: 3072, layers: 28, heads: 16, kvHeads: 8, headDim: 128, tie: true, maxPositions: 40960 },
  'qwen3-4b': { name: 'Qwen3-4B', vocab: 151936, hidden: 2560, intermediate: 9728, layers: 36, heads: 32, kvHeads: 8, headDim: 128, tie: true, maxPositions: 40960 },
};

/** The DFlash drafter published for Qwen3-4B (z-lab/Qwen3-4B-DFlash-b16): 5 layers, block 16. */
export const DRAFTER_4B = { layers: 5, targetLayerIds: [1, 9, 17, 25, 33], blockSize: 16, maskTokenId: 151669 };

export type Dtype = 'BF16' | 'F32';

interface TensorSpec { name: string; shape: number[]; norm: boolean }

function decoderLayer(p: string, s: Shape, qkNorm = true): TensorSpec[] {
  const { hidden: H, intermediate: I, heads, kvHeads, headDim: hd } = s;
  const t: TensorSpec[] = [
    { name: p + 'input_layernorm.weight', shape: [H], norm: true },
    { name: p + 'self_attn.q_proj.weight', shape: [heads * hd, H], norm: false },
    { name: p + 'self_attn.k_proj.weight', shape: [kvHeads * hd, H], norm: false },
    { name: p + 'self_attn.v_proj.weight', shape: [kvHeads * hd, H], norm: false },
    { name: p + 'self_attn.o_proj.weight', shape: [H, heads * hd], norm: false },
  ];
  if (qkNorm) t.push({ name: p + 'self_attn.q_norm.weight', shape: [hd], norm: true }, { name: p + 'self_attn.k_norm.weight', shape: [hd], norm: true });
  t.push(
    { name: p + 'post_attention_layernorm.weight', shape: [H], norm: true },
    { name: p + 'mlp.gate_proj.weight', shape: [I, H], norm: false },
    { name: p + 'mlp.up_proj.weight', shape: [I, H], norm: false },
    { name: p + 'mlp.down_proj.weight', shape: [H, I], norm: false },
  );
  return t;
}

// xorshift32 -> 16-bit words: sign, exponent 2^-8 .. 2^-6, random mantissa (bf16), or the same as f32.
class Words {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 1; }
  fill(out: Uint16Array | Uint32Array, dtype: Dtype, norm: boolean): void {
    let s = this.s;
    for (let i = 0; i < out.length; i++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      if (dtype === 'BF16') {
        // bf16 bits: sign | exponent 119..121 (2^-8 .. 2^-6) | 7-bit mantissa; norms: 1.0 = 0x3f80
        (out as Uint16Array)[i] = norm ? 0x3f80 : ((s & 0x8000) | ((119 + (s % 3)) << 7) | ((s >>> 8) & 0x7f));
      } else {
        (out as Uint32Array)[i] = norm ? 0x3f800000 : (((s & 1) << 31) | ((119 + ((s >>> 1) % 3)) << 23) | ((s >>> 3) & 0x7fffff)) >>> 0;
      }
    }
    this.s = s;
  }
}

/** Writes one safetensors file tensor by tensor (64 MB chunks of generated words). */
export function writeRandomSafetensors(file: string, specs: TensorSpec[], dtype: Dtype, seed: number): number {
  const width = dtype === 'BF16' ? 2 : 4;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', note: 'random weights (tools/shapes)' } };
  let offset = 0;
  for (const t of specs) {
    const n = t.shape.reduce((a, b) => a * b, 1) * width;
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const fd = fs.openSync(file, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    fs.writeSync(fd, len);
    fs.writeSync(fd, json);
    const words = new Words(seed);
    const chunk = 1 << 25;  // elements per write
    const buf = dtype === 'BF16' ? new Uint16Array(chunk) : new Uint32Array(chunk);
    for (const t of specs) {
      let left = t.shape.reduce((a, b) => a * b, 1);
      while (left > 0) {
        const n = Math.min(left, chunk);
        const view = buf.subarray(0, n);
        words.fill(view, dtype, t.norm);
        fs.writeSync(fd, new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
        left -= n;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return offset;
}

/** A byte-level tokenizer (ids 0..255 are the bytes; the rest unused) with the model's vocabulary size. */
function writeTokenizer(dir: string, vocab: number): void {
  const byteToUnicode = (): string[] => {
    const bs: number[] = [];
    for (let b = 33; b <= 126; b++) bs.push(b);
    for (let b = 161; b <= 172; b++) bs.push(b);
    for (let b = 174; b <= 255; b++) bs.push(b);
    const cs = bs.slice();
    let n = 0;
    for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
    const map: string[] = [];
    bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i])));
    return map;
  };
  const chars = byteToUnicode();
  const v: Record<string, number> = {};
  for (let b = 0; b < 256; b++) v[chars[b]] = b;
  for (let i = 256; i < vocab; i++) v[`<|unused_${i}|>`] = i;
  const tok = {
    version: '1.0', truncation: null, padding: null, added_tokens: [],
    normalizer: null, pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: v, merges: [] },
  };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast', eos_token: null }));
}

export function writeTarget(dir: string, s: Shape, dtype: Dtype = 'BF16', seed = 1): number {
  fs.mkdirSync(dir, { recursive: true });
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [s.vocab, s.hidden], norm: false }];
  for (let l = 0; l < s.layers; l++) specs.push(...decoderLayer(`model.layers.${l}.`, s));
  specs.push({ name: 'model.norm.weight', shape: [s.hidden], norm: true });
  if (!s.tie) specs.push({ name: 'lm_head.weight', shape: [s.vocab, s.hidden], norm: false });
  const bytes = writeRandomSafetensors(path.join(dir, 'model.safetensors'), specs, dtype, seed);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', vocab_size: s.vocab, hidden_size: s.hidden,
    intermediate_size: s.intermediate, num_hidden_layers: s.layers, num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads, head_dim: s.headDim, rms_norm_eps: 1e-6, rope_theta: 1000000,
    tie_word_embeddings: s.tie, max_position_embeddings: s.maxPositions, torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float32',
    eos_token_id: null, bos_token_id: null, hidden_act: 'silu', attention_bias: false,
  }, null, 2));
  writeTokenizer(dir, s.vocab);
  return bytes;
}

export function writeDrafter(dir: string, target: Shape, d = DRAFTER_4B, dtype: Dtype = 'BF16', seed = 2): number {
  fs.mkdirSync(dir, { recursive: true });
  const n = d.targetLayerIds.length;
  const specs: TensorSpec[] = [
    { name: 'fc.weight', shape: [target.hidden, n * target.hidden], norm: false },
    { name: 'hidden_norm.weight', shape: [target.hidden], norm: true },
  ];
  for (let l = 0; l < d.layers; l++) specs.push(...decoderLayer(`layers.${l}.`, target));
  specs.push({ name: 'norm.weight', shape: [target.hidden], norm: true });
  const bytes = writeRandomSafetensors(path.join(dir, 'model.safetensors'), specs, dtype, seed);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    architectures: ['DFlashDraftModel'], model_type: 'qwen3', block_size: d.blockSize, num_target_layers: target.layers,
    dflash_config: { mask_token_id: d.maskTokenId, target_layer_ids: d.targetLayerIds },
    vocab_size: target.vocab, hidden_size: target.hidden, intermediate_size: target.intermediate,
    num_hidden_layers: d.layers, num_attention_heads: target.heads, num_key_value_heads: target.kvHeads,
    head_dim: target.headDim, rms_norm_eps: 1e-6, rope_theta: 1000000, max_position_embeddings: target.maxPositions,
    torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float32', hidden_act: 'silu', attention_bias: false, tie_word_embeddings: false,
  }, null, 2));
  return bytes;
}
