"""Read a llama-architecture GGUF file (e.g. SmolLM2-135M-Instruct.Q4_1.gguf) as a frozen target
for drafter training: the Hugging Face config and f32 parameters under HF tensor names, so the
Qwen3-layout JAX forward in qwen3.py runs it (no q/k norms: qwen3.qkv skips absent ones).

The quantized blocks are expanded with gguf-py's dequantize() — the same values dflash expands
the file to at load (test/46 checks dflash's decoders against that function) — and llama.cpp's
q/k row permutation is undone, as dflash's loader does (native/engine/gguf_blocks.cc).
"""
import numpy as np

# GGUF tensor name (after "blk.N.") -> Hugging Face name (after "model.layers.N.")
_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def unpermute_rope_rows(w, heads):
    """llama.cpp's converter stores each head's rows interleaved (2i, 2i+1) for its rotate-pairs
    RoPE; HF's rotate-half wants (i, i + d/2). w: (heads * d, cols)."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def load_gguf_target(path):
    """-> (cfg: HF LlamaConfig-like dict, params: {HF name: f32 (out, in)}, meta: tokenizer fields)."""
    import gguf
    r = gguf.GGUFReader(path)
    f = lambda k, d=None: r.fields[k].contents() if k in r.fields else d
    arch = f("general.architecture")
    if arch != "llama":
        raise SystemExit(f"{path}: architecture {arch!r} is not supported here (llama only)")
    H, nh, kvh = int(f("llama.embedding_length")), int(f("llama.attention.head_count")), int(f("llama.attention.head_count_kv"))
    names = {t.name for t in r.tensors}
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": H, "intermediate_size": int(f("llama.feed_forward_length")),
        "num_hidden_layers": int(f("llama.block_count")), "num_attention_heads": nh,
        "num_key_value_heads": kvh, "head_dim": H // nh,
        "rms_norm_eps": float(f("llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(f("llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(f("llama.context_length")),
        "vocab_size": len(f("tokenizer.ggml.tokens")),
        "tie_word_embeddings": "output.weight" not in names,
        "eos_token_id": int(f("tokenizer.ggml.eos_token_id")),
        "bos_token_id": int(f("tokenizer.ggml.bos_token_id", 1)),
    }
    params = {}
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if t.name == "token_embd.weight":
            params["model.embed_tokens.weight"] = w
        elif t.name == "output_norm.weight":
            params["model.norm.weight"] = w
        elif t.name == "output.weight":
            params["lm_head.weight"] = w
        elif t.name.startswith("blk."):
            _, i, rest = t.name.split(".", 2)
            if rest not in _LAYER:
                raise SystemExit(f"{path}: tensor {t.name} is not a llama layer tensor")
            if rest == "attn_q.weight":
                w = unpermute_rope_rows(w, nh)
            elif rest == "attn_k.weight":
                w = unpermute_rope_rows(w, kvh)
            params[f"model.layers.{i}.{_LAYER[rest]}"] = w
        else:
            raise SystemExit(f"{path}: unexpected tensor {t.name}")
    meta = {"tokens": list(f("tokenizer.ggml.tokens"))}
    return cfg, params, meta
