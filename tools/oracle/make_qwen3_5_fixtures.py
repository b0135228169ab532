"""Tiny random Qwen3.5 checkpoints written by Hugging Face transformers itself (issue 23).

transformers' Qwen3_5ForConditionalGeneration (the released layout: config.json with the text
model under text_config, tensors under model.language_model.*, a vision tower under model.visual.*)
is built from a Qwen3_5Config with a tiny vision tower, every parameter drawn here (seeded), and
save_pretrained writes the checkpoint.

    .venv-oracle/bin/python tools/oracle/make_qwen3_5_fixtures.py [name ...]   (default: all)
    .venv-oracle/bin/python tools/oracle/make_goldens.py qwen3_5-f32

Models (test/fixtures/models):
  qwen3_5-f32  4 layers (Gated DeltaNet x 3, then gated full attention), hidden 64; DeltaNet with
               2 key heads over 4 value heads of 16 (so value heads share key heads), conv kernel
               4; attention 4 heads over 2 KV heads of 32, RoPE on the first 8 dims (partial 0.25);
               tied embeddings (as the small released sizes are).
  qwen3_5-bf16 qwen3_5-f32's weights rounded to bfloat16 (for the 16-bit path: goldens in f32 on
               the upcast weights and in bfloat16).
  qwen3_5-moe-f32  the same text model with every MLP a sparse MoE block (Qwen3_5MoeForConditionalGeneration):
               8 experts of width 32, top 2 renormalised, a shared expert of width 48 scaled by
               sigmoid(shared_expert_gate x); untied head.
  qwen3_5-text-f32  the text-only layout (Qwen3_5ForCausalLM: config model_type qwen3_5_text,
               tensors under model.*), dense, with an untied head; its own seed. Its goldens add a
               200-token prompt (three chunks of transformers' chunked prefill, and of dflash's).
It reuses the byte-level tokenizer of qwen3-f32 (vocabulary 256).
"""
import sys

import torch
from transformers import (Qwen3_5Config, Qwen3_5ForCausalLM, Qwen3_5ForConditionalGeneration, Qwen3_5MoeConfig,
                          Qwen3_5MoeForConditionalGeneration, Qwen3_5TextConfig)

from hf_fixture import draw_weights, save_fixture

TEXT = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
            linear_value_head_dim=16, linear_conv_kernel_dim=4, rms_norm_eps=1e-6, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25,
                             "mrope_section": [1, 1, 2], "mrope_interleaved": True},
            bos_token_id=None, eos_token_id=None, pad_token_id=None)
VISION = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=64, patch_size=2,
              num_position_embeddings=16)


def weight_rule(name: str) -> tuple[float, float]:
    if name.endswith("linear_attn.norm.weight"):  # the gated norm multiplies by w
        return 1.0, 0.1
    if name.endswith("norm.weight"):  # Qwen3_5RMSNorm multiplies by (1 + w)
        return 0.0, 0.1
    if "embed_tokens" in name:
        return 0.0, 1.0
    if name.endswith("A_log"):  # decays exp(-exp(A_log) softplus(.)) well inside (0, 1)
        return -1.0, 0.5
    if name.endswith("dt_bias"):
        return 0.0, 0.5
    if "conv1d" in name:
        return 0.0, 0.4
    if name.endswith("mlp.gate.weight"):  # well separated router logits
        return 0.0, 0.5
    return 0.0, 0.15


def main() -> None:
    names = set(sys.argv[1:]) or {"qwen3_5-f32", "qwen3_5-bf16", "qwen3_5-moe-f32", "qwen3_5-text-f32"}
    if names & {"qwen3_5-f32", "qwen3_5-bf16"}:
        cfg = Qwen3_5Config(text_config=TEXT, vision_config=VISION, tie_word_embeddings=True)
        torch.manual_seed(71)
        model = Qwen3_5ForConditionalGeneration(cfg).to(torch.float32)
        draw_weights(model, 71, weight_rule)
        save_fixture(model, "qwen3_5-f32")
        save_fixture(model.to(torch.bfloat16), "qwen3_5-bf16")

    if "qwen3_5-moe-f32" in names:
        moe_text = dict(TEXT, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=48)
        del moe_text["intermediate_size"]
        cfg = Qwen3_5MoeConfig(text_config=moe_text, vision_config=VISION, tie_word_embeddings=False)
        torch.manual_seed(72)
        model = Qwen3_5MoeForConditionalGeneration(cfg).to(torch.float32)
        draw_weights(model, 72, weight_rule)
        save_fixture(model, "qwen3_5-moe-f32")

    if "qwen3_5-text-f32" in names:
        cfg = Qwen3_5TextConfig(**TEXT, tie_word_embeddings=False)
        torch.manual_seed(73)
        model = Qwen3_5ForCausalLM(cfg).to(torch.float32)
        draw_weights(model, 73, weight_rule)
        save_fixture(model, "qwen3_5-text-f32")


if __name__ == "__main__":
    main()
