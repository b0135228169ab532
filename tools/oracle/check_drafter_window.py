"""Checks the numpy drafter reference (drafter_ref.py) against z-lab's own DFlash drafter code,
sliding windows included, and writes the goldens the test suite compares drafter_ref.py with.

z-lab's dflash/model.py is not part of this repository: pass the path of a copy (from a clone of
github.com/z-lab/dflash, or the dflash.py shipped with a z-lab drafter on the hub).

    .venv-oracle/bin/python tools/oracle/check_drafter_window.py --zlab-model /path/to/dflash/model.py

z-lab's Qwen3DFlashAttention hands `sliding_window` to transformers' attention function. Only the
flash-attention-2 path applies it (transformers turns it into flash_attn window_size =
(w - 1, w - 1) when the key length exceeds w; flash_attn lets query i of Sq see key j of Sk iff
i + Sk - Sq - (w - 1) <= j <= i + Sk - Sq + (w - 1)). flash-attn does not run on CPU, so this
script registers an attention function that computes exactly that with an explicit mask, and
also runs transformers' sdpa path (which ignores the window). The drafter is driven the way
z-lab's dflash_generate drives it: target features as target_hidden, the block [last, mask...]
embedded by the target, positions cache_len .. start + block, a DynamicCache cropped to the
context length after each draft, is_causal=False.
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import torch
import transformers
from transformers import DynamicCache, Qwen3Config
from transformers.modeling_utils import AttentionInterface

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from drafter_ref import config_windows, drafter_forward, load_safetensors  # noqa: E402
from zlab import crop_to, load_zlab  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "test" / "fixtures" / "models"
DRAFTER, TARGET = MODELS / "qwen3-f32-dflash-swa", MODELS / "qwen3-f32"
OUT = ROOT / "test" / "fixtures" / "goldens" / "drafter-window.json"
WINDOWS = [None, 3, 6, 12, 64]  # None: the config's layers all full attention
CONTEXTS = [1, 5, 17, 40]


def flash_window_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                           sliding_window=None, is_causal=None, **kwargs):
    """flash_attn_func(causal=False, window_size=(w - 1, w - 1)) as transformers calls it, on CPU."""
    assert attention_mask is None and not is_causal, "z-lab drafts with is_causal=False and no mask"
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = (query @ key.transpose(-1, -2)) * scaling
    sq, sk = query.shape[2], key.shape[2]
    if sliding_window is not None and sk > sliding_window:  # transformers' condition
        i = torch.arange(sq)[:, None] + sk - sq  # bottom-right aligned, as flash_attn does
        j = torch.arange(sk)[None, :]
        scores = scores.masked_fill(~((j >= i - (sliding_window - 1)) & (j <= i + (sliding_window - 1))), float("-inf"))
    out = torch.softmax(scores.float(), dim=-1).to(query.dtype) @ value
    return out.transpose(1, 2).contiguous(), None


def zlab_draft(zlab, dcfg: dict, window, attn: str, feats: np.ndarray, steps: list[int], last: int, block: int):
    """Logits of z-lab's drafter for the block after the last context step; the context is fed
    in `steps` (cumulative row counts), with the draft cache cropped between steps."""
    cfg = dict(dcfg)
    if window is None:
        cfg["use_sliding_window"] = False
    else:
        cfg["sliding_window"] = window
    config = Qwen3Config(**cfg)
    config._attn_implementation = attn
    model = zlab.DFlashDraftModel(config).eval()
    weights = {k: torch.from_numpy(v.copy()) for k, v in load_safetensors(DRAFTER).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    tw = load_safetensors(TARGET)
    embed, lm_head = torch.from_numpy(tw["embed_tokens.weight"]), torch.from_numpy(tw["lm_head.weight"])
    mask = dcfg["dflash_config"]["mask_token_id"]
    cache = DynamicCache()
    prev = 0
    with torch.no_grad():
        for start in steps:
            target_hidden = torch.from_numpy(feats[prev:start])[None]
            noise = embed[[last] + [mask] * (block - 1)][None]
            pos = torch.arange(cache.get_seq_length(), start + block)[None]
            out = model(target_hidden=target_hidden, noise_embedding=noise, position_ids=pos,
                        past_key_values=cache, use_cache=True, is_causal=False)
            crop_to(cache, start)
            prev = start
    return (out[0, -block:] @ lm_head.T).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zlab-model", required=True, help="path to z-lab's dflash/model.py")
    a = ap.parse_args()
    zlab = load_zlab(a.zlab_model)
    AttentionInterface.register("windowed_eager_cpu", flash_window_attention)
    dcfg = json.loads((DRAFTER / "config.json").read_text())
    tcfg = json.loads((TARGET / "config.json").read_text())
    dw, tw = load_safetensors(DRAFTER), load_safetensors(TARGET)
    block = dcfg["block_size"]
    rng = np.random.default_rng(7)
    feats = rng.standard_normal((max(CONTEXTS), len(dcfg["dflash_config"]["target_layer_ids"]) * dcfg["hidden_size"]))
    feats = np.array([[float(f"{x:.7g}") for x in row] for row in feats], dtype=np.float32)  # exactly as stored
    cases, worst = [], 0.0
    for window in WINDOWS:
        wcfg = dict(dcfg, sliding_window=window) if window is not None else dict(dcfg, use_sliding_window=False)
        windows = config_windows(wcfg)
        for steps in [[c] for c in CONTEXTS] + [[17, 40], [1, 5, 17]]:
            ctx, last = steps[-1], 100 + steps[-1]
            ref = drafter_forward(dw, dcfg, tw, tcfg, feats[:ctx], last, block, windows)
            flash = zlab_draft(zlab, dcfg, window, "windowed_eager_cpu", feats, steps, last, block)
            err = float(np.abs(flash - ref).max())
            worst = max(worst, err)
            sdpa = zlab_draft(zlab, dcfg, window, "sdpa", feats, steps, last, block)
            full = drafter_forward(dw, dcfg, tw, tcfg, feats[:ctx], last, block, [None] * len(windows))
            print(f"window {window}, context steps {steps}: |z-lab flash - numpy| {err:.2e}; "
                  f"sdpa ignores the window: |z-lab sdpa - numpy full| {float(np.abs(sdpa - full).max()):.2e}, "
                  f"window changes logits by {float(np.abs(ref - full).max()):.3f}")
            cases.append({"windows": windows, "steps": steps, "last_token": last, "block_size": block,
                          "logits": [float(f"{x:.7g}") for x in flash.reshape(-1)]})
    if worst > 1e-4:
        raise SystemExit(f"numpy reference differs from z-lab's drafter by {worst}")
    OUT.write_text(json.dumps({
        "about": "logits of z-lab's DFlashDraftModel (dflash/model.py) with flash-attention-2's window emulated on CPU; "
                 "written by tools/oracle/check_drafter_window.py",
        "oracle": {"transformers": transformers.__version__, "torch": torch.__version__},
        "drafter": DRAFTER.name, "target": TARGET.name,
        "features": [[float(f"{x:.7g}") for x in row] for row in feats.astype(np.float64)],
        "cases": cases,
    }))
    print(f"worst |z-lab - numpy| {worst:.2e}; goldens -> {OUT}")


if __name__ == "__main__":
    main()
