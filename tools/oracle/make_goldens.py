"""Reference outputs of Hugging Face transformers for the tiny fixture checkpoints.

The oracle dflash is checked against: transformers' own Qwen3 / Qwen3-MoE / Llama / Qwen2 / gpt-oss implementations,
run on CPU in float32, on the checkpoints in test/fixtures/models (made by make-fixtures.ts and,
for Qwen3-MoE, by make_moe_fixtures.py with transformers itself). Writes
test/fixtures/goldens/<model>.json with, per prompt: all logits of the prompt positions, the
greedy continuation (24 tokens, KV-cached generation) and the hidden states after every layer
at the prompt positions (the drafter's context features).

    .venv-oracle/bin/python tools/oracle/make_goldens.py [model ...]   (default: all)

bf16 checkpoints get two goldens: <model>.json computed in float32 on the upcast weights (what
dflash computes with dtype 'f32', weights widened at load), and <model>.bf16.json computed by
transformers in bfloat16 (what dflash's 16-bit path is checked against, with bf16 tolerances):
its logits, its greedy continuation and, per prompt position and greedy step, the margin between
its top two logits, so near-ties can be told from real disagreements.

MoE goldens (Qwen3-MoE, gpt-oss) also record, per prompt, the smallest gap between the k-th and (k+1)-th router
logit over every token (prompt and greedy continuation) and sparse layer: a test comparing against them is only meaningful
when that gap is far above f32 rounding (an implementation may otherwise pick another expert).
MoE models run with transformers' eager experts (the per-expert loop of Qwen3MoeExperts / GptOssExperts).
"""
import json
import pathlib
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "test" / "fixtures" / "models"
OUT = ROOT / "test" / "fixtures" / "goldens"
TARGETS = ["qwen3-f32", "qwen3-bf16-tied", "llama-f32", "qwen3-moe-f32", "qwen3-moe-mixed-f32", "qwen2-f32", "gpt-oss-f32", "gpt-oss-mxfp4",
           "qwen3_5-f32", "qwen3_5-moe-f32", "qwen3_5-bf16", "qwen3_5-text-f32"]
BF16_TARGETS = ["qwen3-bf16-tied", "qwen3_5-bf16"]
NEW_TOKENS = 24


def prompts(vocab: int, name: str = "") -> list[list[int]]:
    rng = np.random.default_rng(1234)
    # 1 token, inside a page, across 16-token pages, across several pages.
    out = [rng.integers(0, vocab, size=n).tolist() for n in (1, 5, 17, 40)]
    # Qwen3.5: also longer than transformers' chunk of 64 (its prefill then runs the chunked
    # gated delta rule over two chunks, dflash the recurrence token by token).
    if name.startswith("qwen3_5"):
        out.append(rng.integers(0, vocab, size=100).tolist())
    # And over three whole chunks and a tail (dflash's chunked prefill too: gated_delta.h).
    if name == "qwen3_5-text-f32":
        out.append(rng.integers(0, vocab, size=200).tolist())
    return out


def top2_margin(logits: torch.Tensor) -> float:
    top = torch.topk(logits.float(), 2).values
    return float(top[0] - top[1])


def greedy_with_margins(model, ids: list[int]) -> tuple[list[int], list[float]]:
    seq, margins = list(ids), []
    for _ in range(NEW_TOKENS):
        logits = model(torch.tensor([seq])).logits[0, -1]
        margins.append(top2_margin(logits))
        seq.append(int(logits.argmax()))
    return seq[len(ids):], margins


def greedy_ids(model, ids: list[int]) -> list[int]:
    # Greedy decoding by its definition: a full forward over the whole sequence at every step,
    # argmax of the last position. (model.generate() in transformers 5.23 with do_sample=False
    # gave a different continuation from both this loop and a KV-cached argmax loop on one of
    # these random models, so it is not used as the reference.)
    seq = list(ids)
    for _ in range(NEW_TOKENS):
        logits = model(torch.tensor([seq])).logits[0, -1]
        seq.append(int(logits.argmax()))
    return seq[len(ids):]


def r6(a: np.ndarray) -> list:
    return [float(f"{x:.7g}") for x in a.reshape(-1)]


def router_margin(out, k: int) -> float:
    """Smallest gap between the k-th and (k+1)-th largest router logit (softmax keeps the order)
    over all tokens of all sparse layers."""
    worst = float("inf")
    for logits in out.router_logits or ():
        s = logits.float().sort(dim=-1, descending=True).values
        worst = min(worst, float((s[:, k - 1] - s[:, k]).min()))
    return worst


def model_class(name: str):
    # A released Qwen3.5 checkpoint is the vision-language model (the text model under text_config,
    # tied embeddings at the top level): AutoModelForCausalLM would build the text-only class from
    # text_config and initialise an lm_head of its own.
    model_type = json.loads((MODELS / name / "config.json").read_text()).get("model_type")
    if model_type == "qwen3_5":
        from transformers import Qwen3_5ForConditionalGeneration
        return Qwen3_5ForConditionalGeneration
    if model_type == "qwen3_5_moe":
        from transformers import Qwen3_5MoeForConditionalGeneration
        return Qwen3_5MoeForConditionalGeneration
    return AutoModelForCausalLM


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    names = sys.argv[1:] or TARGETS
    for name in names:
        is_moe = json.loads((MODELS / name / "config.json").read_text()).get("model_type") in ("qwen3_moe", "gpt_oss", "qwen3_5_moe")
        extra = {"experts_implementation": "eager"} if is_moe else {}
        model = model_class(name).from_pretrained(MODELS / name, dtype=torch.float32, **extra)
        model.eval()
        cfg = model.config.get_text_config()  # Qwen3.5: the text model's
        cases = []
        for ids in prompts(cfg.vocab_size, name):
            x = torch.tensor([ids])
            with torch.no_grad():
                out = model(x, output_hidden_states=True, **({"output_router_logits": True} if is_moe else {}))
                greedy = greedy_ids(model, ids)
            logits = out.logits[0].float().numpy()  # (T, V)
            hidden = [h[0].float().numpy() for h in out.hidden_states[1:]]  # after layer i: (T, H)
            case = {
                "prompt_ids": ids,
                "logits": r6(logits),
                "greedy_ids": greedy,
                "hidden_after_layer": [r6(h) for h in hidden],
            }
            if is_moe:  # over the prompt and the greedy continuation
                with torch.no_grad():
                    full = model(torch.tensor([ids + greedy]), output_router_logits=True)
                case["router_topk_margin"] = float(f"{router_margin(full, cfg.num_experts_per_tok):.4g}")
            cases.append(case)
        doc = {
            "model": name,
            "oracle": {"transformers": transformers.__version__, "torch": torch.__version__, "dtype": "float32"},
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "new_tokens": NEW_TOKENS,
            "cases": cases,
        }
        (OUT / f"{name}.json").write_text(json.dumps(doc))
        print(f"{name}: {len(cases)} cases -> {OUT / (name + '.json')}")
    for name in [n for n in BF16_TARGETS if n in names]:
        model = model_class(name).from_pretrained(MODELS / name, dtype=torch.bfloat16)
        model.eval()
        cfg = model.config.get_text_config()
        cases = []
        for ids in prompts(cfg.vocab_size, name):
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0]  # (T, V) bf16
                greedy, margins = greedy_with_margins(model, ids)
            cases.append({
                "prompt_ids": ids,
                "logits": r6(logits.float().numpy()),
                "prompt_margins": [top2_margin(row) for row in logits],
                "greedy_ids": greedy,
                "greedy_margins": margins,
            })
        doc = {
            "model": name,
            "oracle": {"transformers": transformers.__version__, "torch": torch.__version__, "dtype": "bfloat16"},
            "vocab_size": cfg.vocab_size,
            "new_tokens": NEW_TOKENS,
            "cases": cases,
        }
        (OUT / f"{name}.bf16.json").write_text(json.dumps(doc))
        print(f"{name}: bf16 {len(cases)} cases -> {OUT / (name + '.bf16.json')}")


if __name__ == "__main__":
    main()
