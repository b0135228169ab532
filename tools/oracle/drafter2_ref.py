"""A plain numpy DFlash2 drafter forward and candidate selector, written from the equations of
docs/DRAFTERS.md §5 (z-lab/dflash dflash/model.py: GroupedDynamicCausalConv, CandidateSelector,
DFlash2DraftModel; the same formulas as llama.cpp's build_dflash2_conv / build_dflash2_selector),
used by the test suite as an independent check of dflash's DFlash2 drafter graph. Needs only numpy.

    python tools/oracle/drafter2_ref.py --drafter DIR --target DIR --input case.json

case.json: {"features": [[...n*H floats...], ...] (context rows, positions 0..rows-1),
            "last_token": int, "block_size": int,
            optional "windows": per-layer list (int | null),
            optional "temperature": float > 0 and "path": [B - 1 token ids] (q rows along that path)}
prints {"logits": [[...V...] x B]  (after output_multiplier / final_logit_softcapping),
        "argmax": [B ints], "draft": [B - 1 ints] (the greedy walk from last_token),
        "candidates": [[K ints] x (B - 1)] (descending logit, ties to the lower id),
        "scores": [[K floats] x (B - 1)] (along the greedy walk),
        "q": [{token: prob} x (B - 1)] (with a temperature: softmax(scores / T) along "path")}.

The block's drafter layers are z-lab's Qwen3 layers (drafter_ref.py) with one grouped dynamic
causal convolution pair around the attention and one around the MLP:
    c = kernel_projection(x) -> (B, 2, K, G)          x = the sub-layer's normed input
    in  = conv(x,   base[0], c[:, 0])   feeds q/k/v (or the MLP)
    out = conv(sub, base[1], c[:, 1])   sub = o_proj output (or MLP output), added to the residual
    conv(x, base, d)[t, ch] = sum_tap (base[tap, ch] + d[t, tap, ch // group]) * x[t - tap, ch],
    zero where t - tap < 0 (the block's first row); the context K/V (target features) skip it.
"""
import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from drafter_ref import config_windows, load_safetensors, rms_norm, rope, softmax, visible  # noqa: E402


def draft_value(dcfg, name, default=None):
    """z-lab's _draft_value: dflash_config first, then the top-level key."""
    return dcfg.get("dflash_config", {}).get(name, dcfg.get(name, default))


def dflash2_params(dcfg):
    softcap = draft_value(dcfg, "final_logit_softcapping")
    return {
        "kernel": int(draft_value(dcfg, "conv_kernel_size")),
        "group": int(draft_value(dcfg, "conv_group_size")),
        "rank": int(draft_value(dcfg, "selector_rank")),
        "top_k": int(draft_value(dcfg, "selector_top_k")),
        "multiplier": float(draft_value(dcfg, "output_multiplier", 1.0)),
        "softcap": float(softcap) if softcap is not None and float(softcap) > 0 else None,
    }


def grouped_causal_conv(x, base, dyn, group):
    """x (B, H), base (K, H), dyn (B, K, G) -> (B, H); zero before the block's first row."""
    B, H = x.shape
    out = np.zeros_like(x)
    for tap in range(base.shape[0]):
        shifted = np.zeros_like(x)
        shifted[tap:] = x[:B - tap]
        coeff = base[tap][None, :] + np.repeat(dyn[:, tap, :], group, axis=1)  # (B, H): channel ch uses group ch // group
        out += coeff * shifted
    return out


def conv_coefficients(x, proj, kernel):
    """kernel_projection(x) viewed as (B, side 2, kernel, groups)."""
    return (x @ proj.T).reshape(x.shape[0], 2, kernel, -1)


def process_logits(logits, p):
    logits = logits * p["multiplier"]
    if p["softcap"] is not None:
        logits = np.tanh(logits / p["softcap"]) * p["softcap"]
    return logits


def top_k(row, k):
    """The k largest entries of row, largest first, ties to the lower index."""
    order = np.argsort(-row, kind="stable")[:k]
    return order, row[order]


def drafter2_forward(dw, dcfg, tw, tcfg, features, last_token, block, windows=None):
    """Final-normed hidden states (B, H) and processed logits (B, V) of the block."""
    p = dflash2_params(dcfg)
    H = dcfg["hidden_size"]
    nh, kvh = dcfg["num_attention_heads"], dcfg["num_key_value_heads"]
    hd = dcfg.get("head_dim") or H // nh
    eps, theta = dcfg.get("rms_norm_eps", 1e-6), dcfg.get("rope_theta", 10000.0)
    mask = draft_value(dcfg, "mask_token_id")
    scale = float(draft_value(dcfg, "input_embedding_scale", 1.0))
    embed = tw["embed_tokens.weight"]
    lm_head = embed if tcfg.get("tie_word_embeddings") else tw["lm_head.weight"]

    feats = np.asarray(features, dtype=np.float32)
    C = feats.shape[0]
    ctx = rms_norm(feats @ dw["fc.weight"].T, dw["hidden_norm.weight"], eps)  # (C, H), no convolution
    h = embed[[last_token] + [mask] * (block - 1)] * scale                     # (B, H)
    ctx_pos, blk_pos = np.arange(C), np.arange(C, C + block)
    all_pos = np.concatenate([ctx_pos, blk_pos])
    if windows is None:
        windows = config_windows(dcfg)
    for i in range(dcfg["num_hidden_layers"]):
        pre = f"layers.{i}."
        vis = visible(blk_pos, all_pos, windows[i])
        # attention sub-layer, wrapped by attention_conv
        x = rms_norm(h, dw[pre + "input_layernorm.weight"], eps)
        c = conv_coefficients(x, dw[pre + "attention_conv.kernel_projection.weight"], p["kernel"])
        base = dw[pre + "attention_conv.base_kernel"]                        # (2, K, H)
        x = grouped_causal_conv(x, base[0], c[:, 0], p["group"])
        q = rms_norm((x @ dw[pre + "self_attn.q_proj.weight"].T).reshape(block, nh, hd), dw[pre + "self_attn.q_norm.weight"], eps)
        k = np.concatenate([ctx @ dw[pre + "self_attn.k_proj.weight"].T, x @ dw[pre + "self_attn.k_proj.weight"].T])
        v = np.concatenate([ctx @ dw[pre + "self_attn.v_proj.weight"].T, x @ dw[pre + "self_attn.v_proj.weight"].T])
        k = rope(rms_norm(k.reshape(C + block, kvh, hd), dw[pre + "self_attn.k_norm.weight"], eps), all_pos, theta)
        v = v.reshape(C + block, kvh, hd)
        q = rope(q, blk_pos, theta)
        att = np.zeros((block, nh, hd), dtype=np.float32)
        for head in range(nh):
            kv = head // (nh // kvh)
            s = (q[:, head, :] @ k[:, kv, :].T) / np.sqrt(hd)
            att[:, head, :] = softmax(np.where(vis, s, -np.inf)) @ v[:, kv, :]
        o = att.reshape(block, nh * hd) @ dw[pre + "self_attn.o_proj.weight"].T
        h = h + grouped_causal_conv(o, base[1], c[:, 1], p["group"])
        # MLP sub-layer, wrapped by mlp_conv
        x = rms_norm(h, dw[pre + "post_attention_layernorm.weight"], eps)
        c = conv_coefficients(x, dw[pre + "mlp_conv.kernel_projection.weight"], p["kernel"])
        base = dw[pre + "mlp_conv.base_kernel"]
        x = grouped_causal_conv(x, base[0], c[:, 0], p["group"])
        gate, up = x @ dw[pre + "mlp.gate_proj.weight"].T, x @ dw[pre + "mlp.up_proj.weight"].T
        m = ((gate / (1 + np.exp(-gate))) * up) @ dw[pre + "mlp.down_proj.weight"].T
        h = h + grouped_causal_conv(m, base[1], c[:, 1], p["group"])
    hn = rms_norm(h, dw["norm.weight"], eps)
    return hn, process_logits(hn @ lm_head.T, p)


def select(dw, p, hidden, logits, anchor, temperature=0.0, path=None):
    """The candidate selector over block rows 1..B-1 (hidden (B-1, H), logits (B-1, V)).
    score_i[k] = unary_i[k] + sum_r pred[prev, r] * g_i[r] * succ[cand_i[k], r], g = hidden_projection(hidden),
    prev = the anchor at row 1, then the token chosen at the row before. Greedy: argmax (first of equal
    scores); with a path: follow it and return q_i = softmax(score_i / temperature) over the candidates."""
    gate = hidden @ dw["candidate_selector.hidden_projection.weight"].T        # (B-1, rank)
    pred, succ = dw["candidate_selector.predecessor_codebook"], dw["candidate_selector.successor_codebook"]
    prev, draft, cands, scores, qs = anchor, [], [], [], []
    for i in range(hidden.shape[0]):
        cand, unary = top_k(logits[i], p["top_k"])
        score = unary + succ[cand] @ (pred[prev] * gate[i])
        token = int(cand[int(np.argmax(score))]) if path is None else int(path[i])
        if path is not None:
            if token not in cand:
                raise ValueError(f"path token {token} at row {i + 1} is not among the candidates {cand.tolist()}")
            q = softmax(score / temperature)
            qs.append({int(t): float(x) for t, x in zip(cand, q)})
        draft.append(token)
        cands.append(cand.tolist())
        scores.append(score.tolist())
        prev = token
    return draft, cands, scores, qs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drafter", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--input", required=True)
    a = ap.parse_args()
    d, t = pathlib.Path(a.drafter), pathlib.Path(a.target)
    dcfg = json.loads((d / "config.json").read_text())
    tcfg = json.loads((t / "config.json").read_text())
    case = json.loads(pathlib.Path(a.input).read_text())
    dw = load_safetensors(d)
    block = case["block_size"]
    hn, logits = drafter2_forward(dw, dcfg, load_safetensors(t), tcfg, case["features"], case["last_token"], block, case.get("windows"))
    p = dflash2_params(dcfg)
    out = {"logits": logits.tolist(), "argmax": logits.argmax(-1).tolist()}
    out["draft"], out["candidates"], out["scores"], _ = select(dw, p, hn[1:], logits[1:], case["last_token"])
    if case.get("temperature"):
        out["q"] = select(dw, p, hn[1:], logits[1:], case["last_token"], case["temperature"], case["path"])[3]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
