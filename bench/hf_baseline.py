"""transformers (torch, CPU, float32) prefill and greedy-decode throughput on a checkpoint: the
baseline bench/hf.ts sets dflash against, in the same run. Prints one JSON object.

    .venv-oracle/bin/python bench/hf_baseline.py --model DIR --prompt-tokens 128 --new-tokens 64
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    ids = torch.tensor([[(i * 31 + 7) % vocab for i in range(a.prompt_tokens)]])
    prefill, decode = [], []
    with torch.inference_mode():
        for rep in range(a.reps + 1):
            t0 = time.perf_counter()
            out = model(ids, use_cache=True)
            t1 = time.perf_counter()
            past, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(a.new_tokens - 1):
                out = model(tok, past_key_values=past, use_cache=True)
                past, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            t2 = time.perf_counter()
            if rep > 0:  # the first repetition warms up
                prefill.append(a.prompt_tokens / (t1 - t0))
                decode.append((a.new_tokens - 1) / (t2 - t1))
    med = lambda v: sorted(v)[len(v) // 2]
    print(json.dumps({"prefill_tok_s": med(prefill), "decode_tok_s": med(decode), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
