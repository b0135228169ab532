"""Tiny random Qwen2 checkpoints written by Hugging Face transformers itself.

transformers' Qwen2ForCausalLM is built from a Qwen2Config, every parameter is drawn here (seeded;
transformers' init leaves the q/k/v biases at zero, which would test nothing), and
save_pretrained writes the checkpoint in the hub layout (q/k/v_proj with biases, o_proj without).

    .venv-oracle/bin/python tools/oracle/make_qwen2_fixtures.py
    .venv-oracle/bin/python tools/oracle/make_goldens.py qwen2-f32

Models (test/fixtures/models):
  qwen2-f32   2 layers, hidden 64, 4 heads over 2 KV heads (head_dim 16 = hidden / heads), tied
              embeddings (as the small Qwen2.5 models), biases drawn as large as the weights
It reuses the byte-level tokenizer of qwen3-f32 (vocabulary 256).
"""
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from hf_fixture import draw_weights, save_fixture

SPECS = {
    "qwen2-f32": dict(seed=51, vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
}


def weight_rule(name: str) -> tuple[float, float]:
    if name.endswith("norm.weight"):
        return 1.0, 0.1
    if "embed_tokens" in name:
        return 0.0, 1.0
    if name.endswith(".bias"):  # large enough to move every logit
        return 0.0, 0.5
    return 0.0, 0.15


def main() -> None:
    for name, spec in SPECS.items():
        spec = dict(spec)
        seed = spec.pop("seed")
        cfg = Qwen2Config(**spec, rms_norm_eps=1e-6, max_position_embeddings=4096, use_sliding_window=False,
                          rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, bos_token_id=None, eos_token_id=None)
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(cfg).to(torch.float32)
        draw_weights(model, seed, weight_rule)
        save_fixture(model, name)


if __name__ == "__main__":
    main()
