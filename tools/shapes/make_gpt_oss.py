#!/usr/bin/env python3
"""A random-weight gpt-oss checkpoint at gpt-oss-20b's layer widths, with its experts in MXFP4 as
the release stores them, small enough for this machine: for timing and device bytes only (the
outputs are noise).

  python3 tools/shapes/make_gpt_oss.py --out DIR [--layers 2] [--experts 8] [--vocab 8192]
                                       [--width W --heads N --kv-heads M]   (a narrower model: CI)

gpt-oss-20b (openai/gpt-oss-20b config.json): hidden 2880, 64 query / 8 KV heads of 64, expert
width 2880, 32 experts, top 4, sliding window 128 on even layers, YaRN. Here: its widths, fewer
layers and experts (every expert matrix is one of the release's size) and a smaller vocabulary.
Experts: *_blocks U8 (E, out, in/32, 16) random bytes (every e2m1 code), *_scales U8 E8M0 in
118..121 (2^-9 .. 2^-6); everything else as tools/shapes/make_random.py writes it (bf16 or f32),
streamed tensor by tensor.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_random import DTYPES, write_safetensors, write_tokenizer  # noqa: E402

GPT_OSS_20B = dict(hidden=2880, heads=64, kv_heads=8, head_dim=64, intermediate=2880, experts_per_token=4, window=128)


def specs(s, layers, experts, vocab):
    """(name, shape, kind) as make_random.write_safetensors takes them: False random weights in the
    dtype, True ones (norms), "u8" random bytes (e2m1 pairs), "e8m0" exponents."""
    H, I, hd = s["hidden"], s["intermediate"], s["head_dim"]
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    out = [("model.embed_tokens.weight", [vocab, H], False)]
    for layer in range(layers):
        p = f"model.layers.{layer}."
        out += [(p + "input_layernorm.weight", [H], True), (p + "post_attention_layernorm.weight", [H], True)]
        for n, rows, cols in (("q", q, H), ("k", kv, H), ("v", kv, H), ("o", H, q)):
            out += [(p + f"self_attn.{n}_proj.weight", [rows, cols], False), (p + f"self_attn.{n}_proj.bias", [rows], False)]
        out += [(p + "self_attn.sinks", [s["heads"]], False),
                (p + "mlp.router.weight", [experts, H], False), (p + "mlp.router.bias", [experts], False),
                (p + "mlp.experts.gate_up_proj_blocks", [experts, 2 * I, H // 32, 16], "u8"),
                (p + "mlp.experts.gate_up_proj_scales", [experts, 2 * I, H // 32], "e8m0"),
                (p + "mlp.experts.gate_up_proj_bias", [experts, 2 * I], False),
                (p + "mlp.experts.down_proj_blocks", [experts, H, I // 32, 16], "u8"),
                (p + "mlp.experts.down_proj_scales", [experts, H, I // 32], "e8m0"),
                (p + "mlp.experts.down_proj_bias", [experts, H], False)]
    return out + [("model.norm.weight", [H], True), ("lm_head.weight", [vocab, H], False)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--width", type=int, help="hidden and expert width (multiple of 32) instead of gpt-oss-20b's 2880")
    p.add_argument("--heads", type=int, help="query heads of 64 (with --width)")
    p.add_argument("--kv-heads", type=int, help="KV heads (with --width)")
    a = p.parse_args(argv)
    s = dict(GPT_OSS_20B)
    if a.width:
        if a.width % 32:
            p.error("--width must be a multiple of 32 (MXFP4 blocks)")
        s.update(hidden=a.width, intermediate=a.width, heads=a.heads or s["heads"], kv_heads=a.kv_heads or s["kv_heads"])
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    n = write_safetensors(os.path.join(a.out, "model.safetensors"), specs(s, a.layers, a.experts, a.vocab), a.dtype, a.seed,
                          note="tools/shapes/make_gpt_oss.py")
    cfg = {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "vocab_size": a.vocab, "hidden_size": s["hidden"],
           "intermediate_size": s["intermediate"], "num_hidden_layers": a.layers, "num_attention_heads": s["heads"],
           "num_key_value_heads": s["kv_heads"], "head_dim": s["head_dim"], "num_local_experts": a.experts,
           "num_experts_per_tok": s["experts_per_token"], "sliding_window": s["window"], "rms_norm_eps": 1e-5,
           "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(a.layers)],
           "rope_parameters": {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                               "truncate": False, "original_max_position_embeddings": 4096},
           "max_position_embeddings": 131072, "attention_bias": True, "tie_word_embeddings": False, "hidden_act": "silu",
           "swiglu_limit": 7.0, "eos_token_id": None, "bos_token_id": None,
           "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float32",
           "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_tokenizer(a.out, a.vocab)
    print(f"random gpt-oss target (width {s['hidden']}, {a.layers} layers, {a.experts} experts, MXFP4): {n / 1e9:.2f} GB in {time.time() - t0:.1f} s -> {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
