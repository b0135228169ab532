// Tiny random-weight checkpoints in the real Hugging Face layouts (Qwen3 / Qwen3-MoE / Llama
// targets, z-lab DFlash and DFlash2 drafters), written by the tests themselves, plus a byte-level
// tokenizer.json.
// (The Qwen3-MoE fixtures with transformers goldens are written by transformers itself:
// tools/oracle/make_moe_fixtures.py; this writer makes further shapes for engine tests.)
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { TensorToWrite, writeSafetensors } from '../../lib/safetensors';

/** Qwen3-MoE options (family 'qwen3_moe'); keys and defaults as in Qwen3MoeConfig. */
export interface TinyMoe {
  experts?: number;        // num_experts (default 8)
  topK?: number;           // num_experts_per_tok (2)
  intermediate?: number;   // moe_intermediate_size (32)
  normTopkProb?: boolean;  // norm_topk_prob (true)
  sparseStep?: number;     // decoder_sparse_step (1)
  mlpOnlyLayers?: number[];
  /** Write transformers 5's key num_local_experts instead of the hub's num_experts. */
  localExpertsKey?: boolean;
  /** Standard deviation of the router weights (default 0.6: decisive routing). */
  routerStd?: number;
}

export interface TinyTarget {
  family?: 'qwen3' | 'llama' | 'qwen3_moe';
  vocab?: number;
  hidden?: number;
  intermediate?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  tie?: boolean;
  seed?: number;
  std?: number;
  /** Zero final norm: every logit is 0, so greedy always picks token 0 (a fully predictable target). */
  constant?: boolean;
  ropeScaling?: Record<string, unknown>;
  /** Store weights as bf16 (rounded to nearest even). */
  bf16?: boolean;
  /** Split the weights over this many files with a model.safetensors.index.json. */
  shards?: number;
  /** Token id of <|endoftext|> and eos_token_id (default: 256 when the vocabulary has room). */
  eos?: number | null;
  moe?: TinyMoe;
}

export interface TinyDrafter {
  layers?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  intermediate?: number;
  blockSize?: number;
  targetLayerIds?: number[];
  seed?: number;
  std?: number;
  constant?: boolean;
  /** Sliding-window layers as z-lab's configs declare them: use_sliding_window true,
   *  sliding_window = window, layer_types = layerTypes (default: every layer sliding). */
  slidingWindow?: number;
  layerTypes?: ('sliding_attention' | 'full_attention')[];
  /** A DFlash2 drafter (architectures ["DFlash2DraftModel"], docs/DRAFTERS.md §5). */
  dflash2?: TinyDFlash2;
  /** attention_bias: q/k/v/o biases in every layer (z-lab's gpt-oss drafters). */
  attentionBias?: boolean;
}

/** DFlash2 additions, with the hub tensor names of z-lab's checkpoints. */
export interface TinyDFlash2 {
  kernel?: number;            // dflash_config.conv_kernel_size (default 2)
  groupSize?: number;         // conv_group_size (16)
  rank?: number;              // selector_rank (16)
  topK?: number;              // selector_top_k (8)
  outputMultiplier?: number;  // written only when given
  softcap?: number;           // final_logit_softcapping, written only when given
  /** Top-level is_causal (default false, as the published config writes it; null = absent). */
  isCausal?: boolean | null;
  /** Standard deviation of the selector codebooks (default 1: the pair term competes with the
   *  logits, so the walk often picks another candidate than the per-position argmax). */
  codebookStd?: number;
}

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    // xorshift32 -> approx. standard normal via 4 uniforms (Irwin-Hall), deterministic.
    let acc = 0;
    for (let k = 0; k < 4; k++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      acc += s / 2 ** 32;
    }
    return (acc - 2) * Math.sqrt(3);
  };
}

function tensor(name: string, shape: number[], gen: () => number, std: number, base = 0): TensorToWrite {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = base + std * gen();
  return { name, dtype: 'F32', shape, data };
}

// One Qwen3 / Llama decoder layer's tensors in HF order (the draw order fixes the weights).
// `mlp` replaces the dense MLP (an MoE block).
function decoderLayer(t: TensorToWrite[], p: string, d: { H: number; I: number; nh: number; kvh: number; hd: number },
  g: () => number, std: number, qkNorm: boolean, mlp?: () => void): void {
  const { H, I, nh, kvh, hd } = d;
  t.push(tensor(p + 'input_layernorm.weight', [H], g, 0.1, 1));
  t.push(tensor(p + 'self_attn.q_proj.weight', [nh * hd, H], g, std));
  t.push(tensor(p + 'self_attn.k_proj.weight', [kvh * hd, H], g, std));
  t.push(tensor(p + 'self_attn.v_proj.weight', [kvh * hd, H], g, std));
  t.push(tensor(p + 'self_attn.o_proj.weight', [H, nh * hd], g, std));
  if (qkNorm) {
    t.push(tensor(p + 'self_attn.q_norm.weight', [hd], g, 0.1, 1));
    t.push(tensor(p + 'self_attn.k_norm.weight', [hd], g, 0.1, 1));
  }
  t.push(tensor(p + 'post_attention_layernorm.weight', [H], g, 0.1, 1));
  if (mlp) return mlp();
  t.push(tensor(p + 'mlp.gate_proj.weight', [I, H], g, std));
  t.push(tensor(p + 'mlp.up_proj.weight', [I, H], g, std));
  t.push(tensor(p + 'mlp.down_proj.weight', [H, I], g, std));
}

// A Qwen3-MoE sparse block in the hub layout: the router, then one gate/up/down per expert.
function moeBlock(t: TensorToWrite[], p: string, H: number, m: Required<Omit<TinyMoe, 'localExpertsKey' | 'mlpOnlyLayers' | 'sparseStep' | 'topK' | 'normTopkProb'>>,
  g: () => number, std: number): void {
  t.push(tensor(p + 'mlp.gate.weight', [m.experts, H], g, m.routerStd));
  for (let e = 0; e < m.experts; e++) {
    t.push(tensor(`${p}mlp.experts.${e}.gate_proj.weight`, [m.intermediate, H], g, std));
    t.push(tensor(`${p}mlp.experts.${e}.up_proj.weight`, [m.intermediate, H], g, std));
    t.push(tensor(`${p}mlp.experts.${e}.down_proj.weight`, [H, m.intermediate], g, std));
  }
}

// GPT-2 byte <-> unicode table, so every byte is one printable vocabulary entry.
function byteUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  const table: string[] = new Array(256);
  bs.forEach((b, i) => (table[b] = String.fromCodePoint(cs[i])));
  return table;
}

/** A byte-level BPE tokenizer.json with no merges: ids 0..255 are bytes, then <|endoftext|>. */
export function writeByteTokenizer(dir: string, vocab: number): void {
  const table = byteUnicode();
  const v: Record<string, number> = {};
  table.forEach((ch, b) => (v[ch] = b));
  for (let i = 256; i < vocab; i++) v[i === 256 ? '<|endoftext|>' : `<|extra_${i}|>`] = i;
  const added = [];
  for (let i = 256; i < vocab; i++) added.push({ id: i, content: i === 256 ? '<|endoftext|>' : `<|extra_${i}|>`, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tj = {
    version: '1.0', truncation: null, padding: null, added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: v, merges: [] },
  };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tj));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({
    eos_token: vocab > 256 ? '<|endoftext|>' : null,
    chat_template: "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
  }));
}

export function makeTarget(dir: string, o: TinyTarget = {}): Record<string, unknown> {
  const family = o.family ?? 'qwen3';
  const V = o.vocab ?? 320, H = o.hidden ?? 64, I = o.intermediate ?? 128, L = o.layers ?? 2;
  const nh = o.heads ?? 4, kvh = o.kvHeads ?? 2, hd = o.headDim ?? 16, std = o.std ?? 0.15;
  const g = rng(o.seed ?? 1);
  const moe = family === 'qwen3_moe' ? {
    experts: o.moe?.experts ?? 8, topK: o.moe?.topK ?? 2, intermediate: o.moe?.intermediate ?? 32,
    normTopkProb: o.moe?.normTopkProb ?? true, sparseStep: o.moe?.sparseStep ?? 1, mlpOnlyLayers: o.moe?.mlpOnlyLayers ?? [],
    routerStd: o.moe?.routerStd ?? 0.6,
  } : undefined;
  // transformers' rule for which layers are sparse.
  const sparse = (i: number) => !!moe && !moe.mlpOnlyLayers.includes(i) && (i + 1) % moe.sparseStep === 0;
  const t: TensorToWrite[] = [tensor('model.embed_tokens.weight', [V, H], g, 1.0)];
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    decoderLayer(t, p, { H, I, nh, kvh, hd }, g, std, family !== 'llama', sparse(i) ? () => moeBlock(t, p, H, moe!, g, std) : undefined);
  }
  t.push(tensor('model.norm.weight', [H], g, o.constant ? 0 : 0.1, o.constant ? 0 : 1));
  if (!o.tie) t.push(tensor('lm_head.weight', [V, H], g, 0.5));
  fs.mkdirSync(dir, { recursive: true });
  writeWeights(dir, o.bf16 ? t.map(toBf16) : t, o.shards ?? 1);
  const arch = { qwen3: 'Qwen3ForCausalLM', qwen3_moe: 'Qwen3MoeForCausalLM', llama: 'LlamaForCausalLM' }[family];
  const cfg: Record<string, unknown> = {
    architectures: [arch], model_type: family,
    vocab_size: V, hidden_size: H, intermediate_size: I, num_hidden_layers: L, num_attention_heads: nh,
    num_key_value_heads: kvh, head_dim: hd, rms_norm_eps: 1e-6, rope_theta: family === 'llama' ? 500000 : 1000000,
    tie_word_embeddings: !!o.tie, max_position_embeddings: 4096, hidden_act: 'silu', torch_dtype: 'float32',
    attention_bias: false, bos_token_id: null, eos_token_id: o.eos !== undefined ? o.eos : V > 256 ? 256 : null,
  };
  if (o.bf16) cfg.torch_dtype = 'bfloat16';
  if (o.ropeScaling) cfg.rope_scaling = o.ropeScaling;
  if (moe) {
    cfg[o.moe?.localExpertsKey ? 'num_local_experts' : 'num_experts'] = moe.experts;
    Object.assign(cfg, {
      num_experts_per_tok: moe.topK, moe_intermediate_size: moe.intermediate, norm_topk_prob: moe.normTopkProb,
      decoder_sparse_step: moe.sparseStep, mlp_only_layers: moe.mlpOnlyLayers,
    });
  }
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  writeByteTokenizer(dir, V);
  return cfg;
}

export function makeDrafter(dir: string, target: Record<string, unknown>, o: TinyDrafter = {}): Record<string, unknown> {
  const H = target.hidden_size as number, V = target.vocab_size as number;
  const L = o.layers ?? 2, nh = o.heads ?? 4, kvh = o.kvHeads ?? 2, hd = o.headDim ?? 16, I = o.intermediate ?? 128;
  const ids = o.targetLayerIds ?? [0, (target.num_hidden_layers as number) - 1];
  const std = o.std ?? 0.15;
  const g = rng(o.seed ?? 7);
  const t: TensorToWrite[] = [tensor('fc.weight', [H, ids.length * H], g, std), tensor('hidden_norm.weight', [H], g, 0.1, 1)];
  const d2 = o.dflash2 && { kernel: 2, groupSize: 16, rank: 16, topK: 8, codebookStd: 1, ...o.dflash2 };
  for (let i = 0; i < L; i++) {
    decoderLayer(t, `layers.${i}.`, { H, I, nh, kvh, hd }, g, std, true);
    if (o.attentionBias)  // drawn after the layer's other tensors: drafters without biases keep their draws
      for (const [n, size] of [['q', nh * hd], ['k', kvh * hd], ['v', kvh * hd], ['o', H]] as const)
        t.push(tensor(`layers.${i}.self_attn.${n}_proj.bias`, [size], g, 0.5));
    if (d2) for (const conv of ['attention_conv', 'mlp_conv']) dflash2Conv(t, `layers.${i}.${conv}.`, H, d2.kernel, d2.groupSize, g);
  }
  t.push(tensor('norm.weight', [H], g, o.constant ? 0 : 0.1, o.constant ? 0 : 1));
  if (d2) {
    t.push(tensor('candidate_selector.hidden_projection.weight', [d2.rank, H], g, std));
    t.push(tensor('candidate_selector.predecessor_codebook', [V, d2.rank], g, d2.codebookStd));
    t.push(tensor('candidate_selector.successor_codebook', [V, d2.rank], g, d2.codebookStd));
  }
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), t);
  const dflashConfig: Record<string, unknown> = { mask_token_id: V - 1, target_layer_ids: ids };
  const cfg: Record<string, unknown> = {
    architectures: [d2 ? 'DFlash2DraftModel' : 'DFlashDraftModel'], model_type: 'qwen3', block_size: o.blockSize ?? 8,
    num_target_layers: target.num_hidden_layers, dflash_config: dflashConfig,
    vocab_size: V, hidden_size: H, intermediate_size: I, num_hidden_layers: L, num_attention_heads: nh,
    num_key_value_heads: kvh, head_dim: hd, rms_norm_eps: 1e-6, rope_theta: 1000000, max_position_embeddings: 4096,
    torch_dtype: 'float32', tie_word_embeddings: false,
  };
  if (o.attentionBias) cfg.attention_bias = true;
  if (o.slidingWindow !== undefined) {
    cfg.use_sliding_window = true;
    cfg.sliding_window = o.slidingWindow;
    cfg.layer_types = o.layerTypes ?? new Array(L).fill('sliding_attention');
  }
  if (d2) {
    // As z-lab's published DFlash2 config: the DFlash2 keys and block_size in dflash_config.
    delete cfg.block_size;
    Object.assign(dflashConfig, {
      block_size: o.blockSize ?? 8, conv_kernel_size: d2.kernel, conv_group_size: d2.groupSize,
      selector_rank: d2.rank, selector_top_k: d2.topK,
    });
    if (d2.outputMultiplier !== undefined) dflashConfig.output_multiplier = d2.outputMultiplier;
    if (d2.softcap !== undefined) dflashConfig.final_logit_softcapping = d2.softcap;
    if (d2.isCausal !== null) cfg.is_causal = d2.isCausal ?? false;
  }
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  return cfg;
}

// A DFlash2 grouped dynamic convolution: base_kernel (2, kernel, H) near the identity (tap 0 about
// 1, older taps small, as speculators initialises it) and kernel_projection (2 * kernel * H / group, H).
function dflash2Conv(t: TensorToWrite[], p: string, H: number, kernel: number, group: number, g: () => number): void {
  const base = new Float32Array(2 * kernel * H);
  for (let i = 0; i < base.length; i++) base[i] = (Math.floor(i / H) % kernel === 0 ? 1 : 0) + 0.3 * g();
  t.push({ name: p + 'base_kernel', dtype: 'F32', shape: [2, kernel, H], data: base });
  t.push(tensor(p + 'kernel_projection.weight', [2 * kernel * (H / group), H], g, 0.05));
}

function toBf16(t: TensorToWrite): TensorToWrite {
  const f = t.data as Float32Array;
  const u32 = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const b = u32[i];
    out[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;  // round to nearest even
  }
  return { ...t, dtype: 'BF16', data: out };
}

function writeWeights(dir: string, tensors: TensorToWrite[], shards: number): void {
  if (shards <= 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    return;
  }
  const per = Math.ceil(tensors.length / shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    writeSafetensors(path.join(dir, file), part);
    for (const t of part) weightMap[t.name] = file;
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
}

export function tmpDir(prefix = 'dflash-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
