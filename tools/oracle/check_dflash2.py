"""Checks the numpy DFlash2 reference (drafter2_ref.py) against z-lab's own DFlash2DraftModel code
and writes the goldens the test suite compares drafter2_ref.py with (test/19-dflash2.test.ts).

z-lab's dflash/model.py is not part of this repository: pass the path of a copy that defines
DFlash2DraftModel (z-lab/dflash at 1012959 or later).

    .venv-oracle/bin/python tools/oracle/check_dflash2.py --zlab-model /path/to/dflash/model.py

The drafter is driven the way z-lab's dflash_generate drives it: target features as target_hidden,
the block [last, mask...] embedded by the target (times input_embedding_scale), positions
cache_len .. start + block through a DynamicCache cropped back to the context after each draft;
then propose(draft_hidden[:, 1:], last, lm_head, temperature). Greedy: the walk's tokens and the
logits of compute_logits are compared with the reference. Sampled (torch's generator seeded): the
reference follows z-lab's sampled path and its q rows (softmax(score / T) over the candidates) are
compared with z-lab's, candidate by candidate (z-lab's torch.topk is unsorted).
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import torch
import transformers
from transformers import DynamicCache, Qwen3Config

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from drafter2_ref import dflash2_params, drafter2_forward, select  # noqa: E402
from drafter_ref import load_safetensors  # noqa: E402
from zlab import crop_to, load_zlab  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "test" / "fixtures" / "models"
TARGET = MODELS / "qwen3-f32"
DRAFTERS = ["qwen3-f32-dflash2", "qwen3-f32-dflash2-swa"]
OUT = ROOT / "test" / "fixtures" / "goldens" / "dflash2-zlab.json"
STEPS = [[1], [5], [17], [40], [17, 40], [1, 5, 17]]
TEMPERATURE = 1.5


def zlab_model(zlab, drafter: pathlib.Path):
    dcfg = json.loads((drafter / "config.json").read_text())
    model = zlab.DFlash2DraftModel(Qwen3Config(**dcfg)).eval()
    # z-lab's from_pretrained maps the hub's candidate_selector.{predecessor,successor}_codebook to .weight.
    weights = {(k + ".weight" if k.endswith("_codebook") else k): torch.from_numpy(v.copy()) for k, v in load_safetensors(drafter).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    return model, dcfg


def zlab_draft(model, dcfg, tw, feats, steps, last, block, temperature=0.0, seed=0):
    embed = torch.from_numpy(tw["embed_tokens.weight"])
    head = torch.nn.Linear(embed.shape[1], embed.shape[0], bias=False)
    head.weight.data = torch.from_numpy(tw["lm_head.weight"])
    dc = dcfg["dflash_config"]
    scale = float(dc.get("input_embedding_scale", dcfg.get("input_embedding_scale", 1.0)))
    cache, prev = DynamicCache(), 0
    with torch.no_grad():
        for start in steps:
            noise = embed[[last] + [dc["mask_token_id"]] * (block - 1)][None] * scale
            pos = torch.arange(cache.get_seq_length(), start + block)[None]
            out = model(target_hidden=torch.from_numpy(feats[prev:start])[None], noise_embedding=noise, position_ids=pos,
                        past_key_values=cache, use_cache=True)
            crop_to(cache, start)
            prev = start
        logits = model.compute_logits(out[0, -block:], head).numpy()
        torch.manual_seed(seed)
        path, cands, q = model.propose(out[:, 1 - block:], torch.tensor([last]), head, temperature)
    qrows = None if q is None else [{int(t): float(p) for t, p in zip(cands[0, i], q[0, i])} for i in range(block - 1)]
    return logits, path[0].tolist(), qrows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zlab-model", required=True, help="path to z-lab's dflash/model.py (with DFlash2DraftModel)")
    a = ap.parse_args()
    zlab = load_zlab(a.zlab_model)
    tw, tcfg = load_safetensors(TARGET), json.loads((TARGET / "config.json").read_text())
    rng = np.random.default_rng(11)
    feats = rng.standard_normal((max(s[-1] for s in STEPS), 2 * tcfg["hidden_size"]))
    feats = np.array([[float(f"{x:.7g}") for x in row] for row in feats], dtype=np.float32)  # exactly as stored
    cases, worst_logit, worst_q, walk_differs = [], 0.0, 0.0, 0
    for name in DRAFTERS:
        model, dcfg = zlab_model(zlab, MODELS / name)
        dw, p = load_safetensors(MODELS / name), dflash2_params(dcfg)
        for block in [dcfg["dflash_config"]["block_size"], 3]:
            for steps in STEPS:
                ctx, last = steps[-1], 100 + steps[-1] + block
                hn, ref = drafter2_forward(dw, dcfg, tw, tcfg, feats[:ctx], last, block)
                ref_draft = select(dw, p, hn[1:], ref[1:], last)[0]
                logits, draft, _ = zlab_draft(model, dcfg, tw, feats, steps, last, block)
                worst_logit = max(worst_logit, float(np.abs(logits - ref).max()))
                if draft != ref_draft:
                    raise SystemExit(f"{name} block {block} steps {steps}: z-lab walk {draft} != numpy walk {ref_draft}")
                walk_differs += int(np.sum(np.array(draft) != ref[1:].argmax(-1)))
                _, path, zq = zlab_draft(model, dcfg, tw, feats, steps, last, block, TEMPERATURE, seed=ctx)
                rq = select(dw, p, hn[1:], ref[1:], last, TEMPERATURE, path)[3]
                for z, r in zip(zq, rq):
                    assert z.keys() == r.keys(), (z, r)
                    worst_q = max(worst_q, max(abs(z[t] - r[t]) for t in z))
                print(f"{name} block {block} steps {steps}: walk {draft}; sampled path {path}")
                cases.append({"drafter": name, "steps": steps, "last_token": last, "block_size": block,
                              "logits": [float(f"{x:.7g}") for x in logits.reshape(-1)], "draft": draft,
                              "temperature": TEMPERATURE, "path": path,
                              "q": [{str(t): float(f"{v:.7g}") for t, v in row.items()} for row in zq]})
    print(f"worst |z-lab - numpy|: logits {worst_logit:.2e}, q {worst_q:.2e}; the walk left the per-row argmax at {walk_differs} rows")
    if worst_logit > 1e-4 or worst_q > 1e-5:
        raise SystemExit("the numpy reference differs from z-lab's DFlash2 drafter")
    OUT.write_text(json.dumps({
        "about": "logits, greedy walk and sampled q rows of z-lab's DFlash2DraftModel (dflash/model.py); "
                 "written by tools/oracle/check_dflash2.py",
        "oracle": {"transformers": transformers.__version__, "torch": torch.__version__},
        "target": TARGET.name,
        "features": [[float(f"{x:.7g}") for x in row] for row in feats.astype(np.float64)],
        "cases": cases,
    }))
    print(f"goldens -> {OUT}")


if __name__ == "__main__":
    main()
