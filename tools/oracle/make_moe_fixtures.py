"""Tiny random Qwen3-MoE checkpoints written by Hugging Face transformers itself.

transformers' Qwen3MoeForCausalLM is built from a Qwen3MoeConfig, its weights are drawn here
(seeded; larger than transformers' init so that routing and greedy choices have clear margins),
and save_pretrained writes the checkpoint: the hub tensor layout (one gate/up/down_proj per
expert, mlp.gate.weight the router) and transformers 5's config keys (num_local_experts).

    .venv-oracle/bin/python tools/oracle/make_moe_fixtures.py
    .venv-oracle/bin/python tools/oracle/make_goldens.py qwen3-moe-f32 qwen3-moe-mixed-f32

Models (test/fixtures/models):
  qwen3-moe-f32        2 layers, 8 experts, 2 active, norm_topk_prob true, every layer sparse
  qwen3-moe-mixed-f32  3 layers, 6 experts, 3 active, norm_topk_prob false, layer 1 dense
                       (mlp_only_layers [1]), head_dim 32 != hidden / heads, MQA
Both reuse the byte-level tokenizer of qwen3-f32 (vocabulary 256).
"""
import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

from hf_fixture import draw_weights, save_fixture

SPECS = {
    "qwen3-moe-f32": dict(
        seed=41, vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
    ),
    "qwen3-moe-mixed-f32": dict(
        seed=42, vocab_size=256, hidden_size=64, intermediate_size=80, moe_intermediate_size=24,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, head_dim=32,
        num_experts=6, num_experts_per_tok=3, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
    ),
}


def weight_rule(name: str) -> tuple[float, float]:
    if name.endswith("norm.weight"):
        return 1.0, 0.1
    if "embed_tokens" in name:
        return 0.0, 1.0
    if name.endswith("mlp.gate.weight"):  # the router: decisive, well-separated top-k
        return 0.0, 0.6
    if "lm_head" in name:
        return 0.0, 0.5
    return 0.0, 0.15


def main() -> None:
    for name, spec in SPECS.items():
        spec = dict(spec)
        seed = spec.pop("seed")
        cfg = Qwen3MoeConfig(
            **spec, rms_norm_eps=1e-6, max_position_embeddings=4096, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, bos_token_id=None, eos_token_id=None,
        )
        torch.manual_seed(seed)
        model = Qwen3MoeForCausalLM(cfg).to(torch.float32)
        draw_weights(model, seed, weight_rule)
        save_fixture(model, name)


if __name__ == "__main__":
    main()
