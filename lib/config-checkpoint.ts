// Cross-checks of a parsed config against the tensors its checkpoint declares (safetensors
// headers only, so it runs before anything is allocated or compiled): a config.json that does not
// describe its own weights fails here naming the config key, its value and the tensor, instead of
// as a shape error deep in the engine after minutes of compilation.
import type { DrafterConfig, TargetConfig } from './config';
import type { TensorSource } from './safetensors';

function shapes(tensors: readonly TensorSource[]): Map<string, number[]> {
  return new Map(tensors.map((t) => [t.name.replace(/^model\./, ''), t.shape]));
}

// The number of `layers.<i>.` blocks the checkpoint holds (highest index + 1).
function layerCount(names: Iterable<string>): number {
  let n = 0;
  for (const name of names) {
    const m = /^layers\.(\d+)\./.exec(name);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

function expect(label: string, key: string, value: number, tensor: string, shape: number[] | undefined, dim: number, want: number): void {
  if (shape && shape[dim] !== want)
    throw new Error(`${label}: ${key} ${value} does not match the checkpoint: ${tensor} is [${shape.join(', ')}] (dim ${dim} should be ${want})`);
}

/** Throws unless the target checkpoint's embedding, head, layers and experts agree with `cfg`. */
export function checkTargetTensors(cfg: TargetConfig, tensors: readonly TensorSource[], label = 'target config.json'): void {
  const s = shapes(tensors);
  const embed = s.get('embed_tokens.weight');
  expect(label, 'vocab_size', cfg.vocabSize, 'model.embed_tokens.weight', embed, 0, cfg.vocabSize);
  expect(label, 'hidden_size', cfg.hiddenSize, 'model.embed_tokens.weight', embed, 1, cfg.hiddenSize);
  if (!cfg.tieWordEmbeddings) expect(label, 'vocab_size', cfg.vocabSize, 'lm_head.weight', s.get('lm_head.weight'), 0, cfg.vocabSize);
  const layers = layerCount(s.keys());
  if (layers !== cfg.numLayers)
    throw new Error(`${label}: num_hidden_layers ${cfg.numLayers} does not match the checkpoint, which holds ${layers} layers`);
  if (cfg.linearAttention) checkQwen35Layers(cfg, s, label);
  else expect(label, 'num_attention_heads * head_dim', cfg.numHeads * cfg.headDim, 'model.layers.0.self_attn.q_proj.weight',
    s.get('layers.0.self_attn.q_proj.weight'), 0, cfg.numHeads * cfg.headDim);
  if (!cfg.moe) return;
  if (cfg.family === 'gpt_oss') return checkGptOssExperts(cfg, s, label);
  cfg.moe.sparseLayers.forEach((sparse, l) => {
    if (!sparse) return;
    if (s.has(`layers.${l}.mlp.experts.gate_up_proj`))
      throw new Error(`${label}: the checkpoint packs layer ${l}'s experts (model.layers.${l}.mlp.experts.gate_up_proj); dflash reads the hub's one tensor per expert (mlp.experts.<e>.gate_proj.weight ...), which transformers' save_pretrained also writes`);
    let experts = 0;
    while (s.has(`layers.${l}.mlp.experts.${experts}.gate_proj.weight`)) experts++;
    if (experts !== cfg.moe!.numExperts)
      throw new Error(`${label}: num_experts ${cfg.moe!.numExperts} does not match the checkpoint, whose layer ${l} holds ${experts} experts`);
    expect(label, 'moe_intermediate_size', cfg.moe!.moeIntermediateSize, `model.layers.${l}.mlp.experts.0.gate_proj.weight`,
      s.get(`layers.${l}.mlp.experts.0.gate_proj.weight`), 0, cfg.moe!.moeIntermediateSize);
  });
}

// Qwen3.5: each layer is what layer_types says (a Gated DeltaNet's in_proj_qkv, or gated attention's
// q_proj of [q | gate] per head), with the DeltaNet's sizes.
function checkQwen35Layers(cfg: TargetConfig, s: Map<string, number[]>, label: string): void {
  const la = cfg.linearAttention!;
  const conv = 2 * la.numKeyHeads * la.keyHeadDim + la.numValueHeads * la.valueHeadDim;
  la.layers.forEach((linear, l) => {
    const qkv = s.get(`layers.${l}.linear_attn.in_proj_qkv.weight`), q = s.get(`layers.${l}.self_attn.q_proj.weight`);
    if (linear && !qkv)
      throw new Error(`${label}: layer_types says layer ${l} is "linear_attention" but the checkpoint has no model.layers.${l}.linear_attn.in_proj_qkv.weight${q ? ' (it has self_attn.q_proj: an attention layer)' : ''}`);
    if (!linear && !q)
      throw new Error(`${label}: layer_types says layer ${l} is "full_attention" but the checkpoint has no model.layers.${l}.self_attn.q_proj.weight`);
    if (linear) expect(label, 'linear_num_key_heads * linear_key_head_dim * 2 + linear_num_value_heads * linear_value_head_dim', conv,
      `model.layers.${l}.linear_attn.in_proj_qkv.weight`, qkv, 0, conv);
    else expect(label, 'num_attention_heads * head_dim * 2', 2 * cfg.numHeads * cfg.headDim, `model.layers.${l}.self_attn.q_proj.weight`, q, 0, 2 * cfg.numHeads * cfg.headDim);
  });
}

// gpt-oss stacks each layer's experts: gate_up_proj (E, H, 2I), down_proj (E, I, H); MXFP4
// checkpoints as Linear weights, two values a byte (lib/quantization.ts mxfp4Tensors): gate_up_proj
// (E, 2I, H/2), down_proj (E, H, I/2).
function checkGptOssExperts(cfg: TargetConfig, s: Map<string, number[]>, label: string): void {
  const moe = cfg.moe!, E = moe.numExperts, H = cfg.hiddenSize, I = moe.moeIntermediateSize;
  const mx = cfg.quant?.payload === 'mxfp4';
  for (let l = 0; l < cfg.numLayers; l++) {
    const gateUp = `layers.${l}.mlp.experts.gate_up_proj`, down = `layers.${l}.mlp.experts.down_proj`;
    const what = (n: string) => `model.${n}${mx ? '_blocks' : ''}`;
    const gu = s.get(gateUp), dn = s.get(down);
    expect(label, 'num_local_experts', E, what(gateUp), gu, 0, E);
    expect(label, mx ? 'intermediate_size * 2' : 'hidden_size', mx ? 2 * I : H, what(gateUp), gu, 1, mx ? 2 * I : H);
    expect(label, mx ? 'hidden_size / 2' : 'intermediate_size * 2', mx ? H / 2 : 2 * I, what(gateUp), gu, 2, mx ? H / 2 : 2 * I);
    expect(label, mx ? 'hidden_size' : 'intermediate_size', mx ? H : I, what(down), dn, 1, mx ? H : I);
  }
}

/** Throws unless the drafter checkpoint's layers and feature projection agree with `cfg`. */
export function checkDrafterTensors(cfg: DrafterConfig, tensors: readonly TensorSource[], label = 'drafter config.json'): void {
  const s = shapes(tensors);
  const layers = layerCount(s.keys());
  if (layers !== cfg.numLayers)
    throw new Error(`${label}: num_hidden_layers ${cfg.numLayers} does not match the checkpoint, which holds ${layers} layers`);
  expect(label, 'target_layer_ids count * hidden_size', cfg.targetLayerIds.length * cfg.hiddenSize, 'fc.weight', s.get('fc.weight'), 1,
    cfg.targetLayerIds.length * cfg.hiddenSize);
  expect(label, 'hidden_size', cfg.hiddenSize, 'fc.weight', s.get('fc.weight'), 0, cfg.hiddenSize);
  if (cfg.dflash2) checkDFlash2Tensors(cfg, s, label);
}

// DFlash2's tensors in the hub layout (docs/DRAFTERS.md §5): present, and sized as the config says.
function checkDFlash2Tensors(cfg: DrafterConfig, s: Map<string, number[]>, label: string): void {
  const d2 = cfg.dflash2!;
  const H = cfg.hiddenSize, K = d2.convKernelSize, rank = d2.selectorRank;
  const want = new Map<string, [string, number[]]>([
    ['candidate_selector.hidden_projection.weight', ['selector_rank', [rank, H]]],
    ['candidate_selector.predecessor_codebook', ['selector_rank', [-1, rank]]],
    ['candidate_selector.successor_codebook', ['selector_rank', [-1, rank]]],
  ]);
  for (let l = 0; l < cfg.numLayers; l++)
    for (const conv of ['attention_conv', 'mlp_conv']) {
      want.set(`layers.${l}.${conv}.base_kernel`, ['conv_kernel_size', [2, K, H]]);
      want.set(`layers.${l}.${conv}.kernel_projection.weight`, ['conv_kernel_size / conv_group_size', [2 * K * (H / d2.convGroupSize), H]]);
    }
  for (const [name, [keys, shape]] of want) {
    const got = s.get(name);
    if (!got) throw new Error(`${label}: architectures DFlash2DraftModel needs the tensor ${name}, which the checkpoint does not hold`);
    if (got.length !== shape.length || shape.some((n, i) => n >= 0 && got[i] !== n))
      throw new Error(`${label}: dflash_config.${keys} does not match the checkpoint: ${name} is [${got.join(', ')}], expected [${shape.map((n) => (n < 0 ? 'vocab' : n)).join(', ')}]`);
  }
}
