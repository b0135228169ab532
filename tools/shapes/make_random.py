#!/usr/bin/env python3
"""Random-weight checkpoints at published model shapes, for speed and memory measurements at real
scale where no trained weights can be fetched (GPU hosts without network: bench/device/run.sh).

  python3 tools/shapes/make_random.py --shape qwen3-4b --out DIR [--drafter DIR] [--dtype bf16|f32]
  python3 tools/shapes/make_random.py --list

Writes a Hugging Face layout (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json) for the target and, with --drafter, a DFlash drafter of that target
(z-lab's layout: fc, hidden_norm, layers.N, norm). The safetensors file is written by hand (8-byte
header length, JSON header, raw little-endian bytes) tensor by tensor in 64 MB chunks, so the model
is never held in memory and only numpy is needed. Values: random sign and mantissa, magnitude
2^-9 .. 2^-5 (~0.002 .. 0.03); norm weights 1.0. The tokenizer is byte-level (ids 0..255 are the
bytes) padded with unused entries to the model's vocabulary size. Outputs are noise: use these
checkpoints for timing and memory only, never for acceptance rates.
"""
import argparse
import json
import os
import sys
import time

try:
    import numpy as np
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("make_random.py needs numpy (pip install numpy)")

# Target shapes. qwen3-0.6b and qwen3-4b are the published configs; mini is a small shape with the
# same structure, for CI runs of the device kit (seconds on a CPU).
SHAPES = {
    "qwen3-0.6b": dict(name="Qwen3-0.6B", vocab=151936, hidden=1024, intermediate=3072, layers=28,
                       heads=16, kv_heads=8, head_dim=128, tie=True, max_positions=40960),
    "qwen3-4b": dict(name="Qwen3-4B", vocab=151936, hidden=2560, intermediate=9728, layers=36,
                     heads=32, kv_heads=8, head_dim=128, tie=True, max_positions=40960),
    "mini": dict(name="mini (CI)", vocab=4096, hidden=256, intermediate=768, layers=4,
                 heads=4, kv_heads=2, head_dim=64, tie=True, max_positions=4096),
}

# DFlash drafters of those targets. qwen3-4b: z-lab/Qwen3-4B-DFlash-b16 (5 layers, features of
# target layers 1, 9, 17, 25, 33, block 16, mask token 151669, the first id past Qwen3's
# tokenizer). The others follow the same rule scaled to their depth.
DRAFTERS = {
    "qwen3-0.6b": dict(layers=5, target_layer_ids=[1, 7, 13, 19, 25], block_size=16, mask_token_id=151669),
    "qwen3-4b": dict(layers=5, target_layer_ids=[1, 9, 17, 25, 33], block_size=16, mask_token_id=151669),
    "mini": dict(layers=1, target_layer_ids=[1, 2], block_size=16, mask_token_id=4095),
}

DTYPES = {"bf16": ("BF16", np.uint16, 2), "f32": ("F32", np.uint32, 4)}
CHUNK = 1 << 25  # elements generated and written at a time (64 MB of bf16)


def decoder_layer(prefix, s):
    """Tensor specs (name, shape, is_norm) of one Qwen3 decoder layer (q/k norms included)."""
    H, I, hd = s["hidden"], s["intermediate"], s["head_dim"]
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    return [
        (prefix + "input_layernorm.weight", [H], True),
        (prefix + "self_attn.q_proj.weight", [q, H], False),
        (prefix + "self_attn.k_proj.weight", [kv, H], False),
        (prefix + "self_attn.v_proj.weight", [kv, H], False),
        (prefix + "self_attn.o_proj.weight", [H, q], False),
        (prefix + "self_attn.q_norm.weight", [hd], True),
        (prefix + "self_attn.k_norm.weight", [hd], True),
        (prefix + "post_attention_layernorm.weight", [H], True),
        (prefix + "mlp.gate_proj.weight", [I, H], False),
        (prefix + "mlp.up_proj.weight", [I, H], False),
        (prefix + "mlp.down_proj.weight", [H, I], False),
    ]


def random_words(rng, n, dtype):
    """n random weights as raw bf16 (uint16) or f32 (uint32) bit patterns: random sign and
    mantissa, exponent 118..121 (magnitudes 2^-9 .. 2^-5)."""
    if dtype == "bf16":
        w = np.frombuffer(rng.bytes(2 * n), dtype=np.uint16).copy()
        exp = (w >> 7) & 3  # two mantissa bits pick the exponent; the mantissa stays random
        w &= 0x807F
        w |= (exp + 118) << 7
        return w
    w = np.frombuffer(rng.bytes(4 * n), dtype=np.uint32).copy()
    exp = (w >> 23) & 3
    w &= np.uint32(0x807FFFFF)
    w |= (exp + 118) << 23
    return w


def write_safetensors(path, specs, dtype, seed, note="tools/shapes/make_random.py"):
    """Streams the tensors of `specs` to `path`; returns the number of data bytes written. A spec's
    third field is True (a norm: ones), False (random weights in `dtype`), or a byte kind: "u8"
    (random bytes) or "e8m0" (exponents 118..121: MXFP4 scales of 2^-9 .. 2^-6)."""
    st_dtype, word, width = DTYPES[dtype]
    header = {"__metadata__": {"format": "pt", "note": f"random weights ({note})"}}
    offset = 0
    for name, shape, kind in specs:
        byte = kind in ("u8", "e8m0")
        n = int(np.prod(shape)) * (1 if byte else width)
        header[name] = {"dtype": "U8" if byte else st_dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - (8 + len(text)) % 8) % 8)  # data starts 8-byte aligned
    one = np.array(0x3F80 if dtype == "bf16" else 0x3F800000, dtype=word)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text.encode("ascii"))
        for _, shape, kind in specs:
            left = int(np.prod(shape))
            while left > 0:
                n = min(left, CHUNK)
                if kind == "u8":
                    block = np.frombuffer(rng.bytes(n), dtype=np.uint8)
                elif kind == "e8m0":
                    block = rng.integers(118, 122, size=n, dtype=np.uint8)
                else:
                    block = np.full(n, one, dtype=word) if kind is True else random_words(rng, n, dtype)
                f.write(memoryview(block.astype(block.dtype.newbyteorder("<"), copy=False)))  # safetensors is little-endian
                left -= n
    return offset


def byte_unicode():
    """GPT-2's byte -> printable character table (byte-level BPE)."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = [""] * 256
    for b, c in zip(bs, cs):
        table[b] = chr(c)
    return table


def write_tokenizer(out, vocab):
    """A byte-level BPE tokenizer.json with no merges and `vocab` entries (256.. unused), and a
    tokenizer_config.json without an EOS (random weights would stop anywhere)."""
    v = {ch: b for b, ch in enumerate(byte_unicode())}
    for i in range(256, vocab):
        v[f"<|unused_{i}|>"] = i
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
        "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": v, "merges": []},
    }
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": None,
                   "chat_template": "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                                    "{% if add_generation_prompt %}<|assistant|>{% endif %}"}, f)


def common_config(s, dtype):
    return {
        "vocab_size": s["vocab"], "hidden_size": s["hidden"], "intermediate_size": s["intermediate"],
        "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"], "head_dim": s["head_dim"],
        "rms_norm_eps": 1e-6, "rope_theta": 1000000, "max_position_embeddings": s["max_positions"],
        "torch_dtype": "bfloat16" if dtype == "bf16" else "float32", "hidden_act": "silu", "attention_bias": False,
    }


def target_specs(s):
    specs = [("model.embed_tokens.weight", [s["vocab"], s["hidden"]], False)]
    for layer in range(s["layers"]):
        specs += decoder_layer(f"model.layers.{layer}.", s)
    specs.append(("model.norm.weight", [s["hidden"]], True))
    if not s["tie"]:
        specs.append(("lm_head.weight", [s["vocab"], s["hidden"]], False))
    return specs


def drafter_specs(s, d):
    """z-lab's DFlash drafter: fc (hidden x features of the target layers), hidden_norm, decoder
    layers of the target's width, norm. Embedding and lm_head are the target's (not stored)."""
    H = s["hidden"]
    specs = [("fc.weight", [H, len(d["target_layer_ids"]) * H], False), ("hidden_norm.weight", [H], True)]
    for layer in range(d["layers"]):
        specs += decoder_layer(f"layers.{layer}.", s)
    specs.append(("norm.weight", [H], True))
    return specs


def param_count(specs):
    return sum(int(np.prod(shape)) for _, shape, _ in specs)


def write_target(out, s, dtype, seed=1):
    os.makedirs(out, exist_ok=True)
    written = write_safetensors(os.path.join(out, "model.safetensors"), target_specs(s), dtype, seed)
    cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "num_hidden_layers": s["layers"],
           "tie_word_embeddings": s["tie"], "eos_token_id": None, "bos_token_id": None, **common_config(s, dtype)}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_tokenizer(out, s["vocab"])
    return written


def write_drafter(out, s, d, dtype, seed=2):
    os.makedirs(out, exist_ok=True)
    written = write_safetensors(os.path.join(out, "model.safetensors"), drafter_specs(s, d), dtype, seed)
    cfg = {"architectures": ["DFlashDraftModel"], "model_type": "qwen3", "block_size": d["block_size"],
           "num_target_layers": s["layers"], "num_hidden_layers": d["layers"], "tie_word_embeddings": False,
           "dflash_config": {"mask_token_id": d["mask_token_id"], "target_layer_ids": d["target_layer_ids"]},
           **common_config(s, dtype)}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="qwen3-0.6b")
    p.add_argument("--out", help="target checkpoint directory")
    p.add_argument("--drafter", help="also write a DFlash drafter of the shape here")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--list", action="store_true", help="print the shapes and exit")
    a = p.parse_args(argv)
    if a.list:  # one JSON object per shape, with parameter counts
        for key, s in SHAPES.items():
            print(json.dumps({"shape": key, **s, "drafter": DRAFTERS[key], "target_params": param_count(target_specs(s)),
                              "drafter_params": param_count(drafter_specs(s, DRAFTERS[key]))}))
        return 0
    if not a.out:
        p.error("--out DIR is required")
    s = SHAPES[a.shape]
    t0 = time.time()
    n = write_target(a.out, s, a.dtype, a.seed)
    print(f"{s['name']}-shaped target ({a.dtype}): {n / 1e9:.2f} GB in {time.time() - t0:.1f} s -> {a.out}", flush=True)
    if a.drafter:
        t0 = time.time()
        n = write_drafter(a.drafter, s, DRAFTERS[a.shape], a.dtype, a.seed + 1)
        print(f"DFlash drafter ({a.dtype}): {n / 1e9:.2f} GB in {time.time() - t0:.1f} s -> {a.drafter}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
