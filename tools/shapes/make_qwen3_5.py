#!/usr/bin/env python3
"""A random-weight Qwen3.5 checkpoint at a small published size's widths, for timing and state
bytes only (the outputs are noise).

  python3 tools/shapes/make_qwen3_5.py --out DIR [--layers 8] [--vocab 8192] [--dtype bf16|f32] [--qwen3]

--qwen3 writes the attention-only model of similar size to compare with instead: Qwen3-0.6B's
widths (tools/shapes/make_random.py's qwen3-0.6b) with the same layer count and vocabulary.
--mini: narrow widths for CI runs of the device kit (hidden 256, FFN 768, 4 / 2 heads of 64,
DeltaNet 4 / 4 heads of 32; with --qwen3, make_random.py's mini shape).

Widths of Qwen3.5-0.8B (Qwen/Qwen3.5-0.8B's text config): hidden 1024, FFN 3584, gated attention
with 8 query / 2 KV heads of 256 (RoPE on 64 dims), Gated DeltaNet with 16 key / 16 value heads of
128 and a conv kernel of 4, full attention every 4th layer, tied embeddings. Here: fewer layers
(a multiple of 4 keeps the 3:1 mix) and a smaller vocabulary so it fits this machine. Written in
the text-only layout (Qwen3_5ForCausalLM: model.layers.*), streamed tensor by tensor by
tools/shapes/make_random.py's writer; norms are ones (Qwen3.5's zero-centred norms then scale by 2,
which changes no timing).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_random import DTYPES, SHAPES, write_safetensors, write_target, write_tokenizer  # noqa: E402

QWEN3_5_0_8B = dict(hidden=1024, intermediate=3584, heads=8, kv_heads=2, head_dim=256, lk_heads=16, lv_heads=16, lk_dim=128,
                    lv_dim=128, conv=4)
MINI = dict(hidden=256, intermediate=768, heads=4, kv_heads=2, head_dim=64, lk_heads=4, lv_heads=4, lk_dim=32, lv_dim=32, conv=4)


def specs(s, layers, vocab):
    H, I, hd = s["hidden"], s["intermediate"], s["head_dim"]
    conv = 2 * s["lk_heads"] * s["lk_dim"] + s["lv_heads"] * s["lv_dim"]
    vd = s["lv_heads"] * s["lv_dim"]
    out = [("model.embed_tokens.weight", [vocab, H], False)]
    for layer in range(layers):
        p = f"model.layers.{layer}."
        out += [(p + "input_layernorm.weight", [H], True), (p + "post_attention_layernorm.weight", [H], True)]
        if (layer + 1) % 4:
            a = p + "linear_attn."
            out += [(a + "in_proj_qkv.weight", [conv, H], False), (a + "in_proj_z.weight", [vd, H], False),
                    (a + "in_proj_b.weight", [s["lv_heads"], H], False), (a + "in_proj_a.weight", [s["lv_heads"], H], False),
                    (a + "conv1d.weight", [conv, 1, s["conv"]], False), (a + "dt_bias", [s["lv_heads"]], True),
                    (a + "A_log", [s["lv_heads"]], False), (a + "norm.weight", [s["lv_dim"]], True),
                    (a + "out_proj.weight", [H, vd], False)]
        else:
            q, kv = s["heads"] * hd, s["kv_heads"] * hd
            out += [(p + "self_attn.q_proj.weight", [2 * q, H], False), (p + "self_attn.k_proj.weight", [kv, H], False),
                    (p + "self_attn.v_proj.weight", [kv, H], False), (p + "self_attn.o_proj.weight", [H, q], False),
                    (p + "self_attn.q_norm.weight", [hd], True), (p + "self_attn.k_norm.weight", [hd], True)]
        out += [(p + "mlp.gate_proj.weight", [I, H], False), (p + "mlp.up_proj.weight", [I, H], False),
                (p + "mlp.down_proj.weight", [H, I], False)]
    return out + [("model.norm.weight", [H], True)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--qwen3", action="store_true", help="the Qwen3-0.6B-width model of the same depth and vocabulary instead")
    p.add_argument("--mini", action="store_true", help="narrow widths (CI)")
    a = p.parse_args(argv)
    if a.qwen3:
        write_target(a.out, dict(SHAPES["mini" if a.mini else "qwen3-0.6b"], layers=a.layers, vocab=a.vocab), a.dtype, a.seed)
        print(f"random Qwen3 target (0.6B widths, {a.layers} layers) -> {a.out}", flush=True)
        return 0
    if a.layers % 4:
        p.error("--layers must be a multiple of 4 (three DeltaNet layers, then one attention layer)")
    s = MINI if a.mini else QWEN3_5_0_8B
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    n = write_safetensors(os.path.join(a.out, "model.safetensors"), specs(s, a.layers, a.vocab), a.dtype, a.seed,
                          note="tools/shapes/make_qwen3_5.py")
    cfg = {"architectures": ["Qwen3_5ForCausalLM"], "model_type": "qwen3_5_text", "vocab_size": a.vocab, "hidden_size": s["hidden"],
           "intermediate_size": s["intermediate"], "num_hidden_layers": a.layers, "num_attention_heads": s["heads"],
           "num_key_value_heads": s["kv_heads"], "head_dim": s["head_dim"], "linear_num_key_heads": s["lk_heads"],
           "linear_num_value_heads": s["lv_heads"], "linear_key_head_dim": s["lk_dim"], "linear_value_head_dim": s["lv_dim"],
           "linear_conv_kernel_dim": s["conv"], "rms_norm_eps": 1e-6, "max_position_embeddings": 262144,
           "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(a.layers)],
           "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25},
           "tie_word_embeddings": True, "hidden_act": "silu", "attention_bias": False, "eos_token_id": None, "bos_token_id": None,
           "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float32"}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_tokenizer(a.out, a.vocab)
    print(f"random Qwen3.5 target ({'mini' if a.mini else '0.8B'} widths, {a.layers} layers): {n / 1e9:.2f} GB in {time.time() - t0:.1f} s -> {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
