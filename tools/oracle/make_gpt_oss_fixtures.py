"""Tiny random gpt-oss checkpoints written by Hugging Face transformers itself.

transformers' GptOssForCausalLM is built from a GptOssConfig, every parameter drawn here (seeded;
transformers' init leaves sinks, router and expert biases at zero or empty, which would test
nothing), and save_pretrained writes the checkpoint in the hub layout (bf16/f32 experts stacked as
mlp.experts.gate_up_proj (E, H, 2I) with gate and up interleaved, self_attn.sinks, router bias).

    .venv-oracle/bin/python tools/oracle/make_gpt_oss_fixtures.py
    npx vite-node tools/oracle/make-fixtures.ts        # (its drafter, gpt-oss-f32-dflash)
    .venv-oracle/bin/python tools/oracle/make_goldens.py gpt-oss-f32

Models (test/fixtures/models):
  gpt-oss-f32  4 layers (sliding, full, sliding, full; window 8, so prompts of 17 and 40 tokens and
               the greedy continuations leave it), hidden 64, 4 heads over 2 KV heads of 16, 8
               experts, top 2, expert width 32, YaRN RoPE as released (factor 32, beta 32 / 1,
               truncate false) over an original length of 32 (so the ramp sits inside head_dim),
               swiglu_limit 1.5 (so the clamps bite), sinks and biases drawn as large as logits.
  gpt-oss-mxfp4  gpt-oss-f32 with its experts packed in MXFP4 as the release is (Linear orientation,
               *_blocks (E, out, in/32, 16) two e2m1 codes a byte, *_scales E8M0), the rest as it is.
It reuses the byte-level tokenizer of qwen3-f32 (vocabulary 256).
"""
import json
import shutil

import numpy as np
import torch
from transformers import GptOssConfig, GptOssForCausalLM

from hf_fixture import MODELS, draw_weights, save_fixture

SPECS = {
    "gpt-oss-f32": dict(seed=61, vocab_size=256, hidden_size=64, intermediate_size=32, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=8,
                        num_experts_per_tok=2, sliding_window=8, swiglu_limit=1.5, tie_word_embeddings=False),
}


def weight_rule(name: str) -> tuple[float, float]:
    if name.endswith("norm.weight"):
        return 1.0, 0.1
    if "embed_tokens" in name:
        return 0.0, 1.0
    if name.endswith("sinks"):  # logits of the size the scores have
        return 0.0, 1.0
    if name.endswith("bias"):
        return 0.0, 0.5
    if "router" in name:  # well separated router logits
        return 0.0, 0.5
    return 0.0, 0.15


def main() -> None:
    for name, spec in SPECS.items():
        spec = dict(spec)
        seed = spec.pop("seed")
        cfg = GptOssConfig(**spec, rms_norm_eps=1e-5, max_position_embeddings=4096,
                           rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                                            "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 32},
                           bos_token_id=None, eos_token_id=None, pad_token_id=None)
        torch.manual_seed(seed)
        model = GptOssForCausalLM(cfg).to(torch.float32)
        draw_weights(model, seed, weight_rule)
        save_fixture(model, name)


if __name__ == "__main__":
    main()


# ---- MXFP4: the same model with its experts packed as gpt-oss is released -------------------

E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)


def to_mxfp4(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W (E, out, in) f32 -> blocks (E, out, in/32, 16) u8 (two e2m1 codes a byte, low nibble
    first) and scales (E, out, in/32) u8 (E8M0: 2^(s - 127)), each block of 32 inputs scaled so
    its largest magnitude fits 6 and every value rounded to the nearest e2m1 code."""
    e, o, i = w.shape
    blk = w.reshape(e, o, i // 32, 32)
    amax = np.abs(blk).max(axis=-1)
    exp = np.ceil(np.log2(np.maximum(amax, 1e-30) / 6.0)).astype(np.int32)
    exp = np.clip(exp, -127, 127)
    scaled = blk / np.ldexp(np.float32(1), exp)[..., None]
    codes = np.abs(np.abs(scaled)[..., None] - E2M1[:8]).argmin(axis=-1).astype(np.uint8)  # nearest magnitude
    codes |= (np.signbit(scaled) & (codes > 0)).astype(np.uint8) << 3
    pairs = codes.reshape(e, o, i // 32, 16, 2)
    blocks = (pairs[..., 0] | (pairs[..., 1] << 4)).astype(np.uint8)
    return blocks, (exp + 127).astype(np.uint8)


def write_mxfp4(src: str, name: str) -> None:
    """Re-packs `src`'s experts as MXFP4 (transformers' layout: Linear orientation, *_blocks and
    *_scales), everything else as it is; quantization_config as the released gpt-oss has it."""
    from safetensors.numpy import load_file, save_file
    tensors = load_file(str(MODELS / src / "model.safetensors"))
    out = {}
    for k, v in tensors.items():
        if k.endswith("mlp.experts.gate_up_proj") or k.endswith("mlp.experts.down_proj"):
            blocks, scales = to_mxfp4(np.ascontiguousarray(np.swapaxes(v, 1, 2)))  # (E, in, out) -> (E, out, in)
            out[k + "_blocks"], out[k + "_scales"] = blocks, scales
        else:
            out[k] = v
    dst = MODELS / name
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((MODELS / src / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(MODELS / src / f, dst / f)
    print(f"{name}: written to {dst}")


if __name__ == "__main__":
    write_mxfp4("gpt-oss-f32", "gpt-oss-mxfp4")
