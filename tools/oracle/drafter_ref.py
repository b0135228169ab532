"""A plain numpy DFlash drafter forward, written straight from the equations (paper + the z-lab
reference's structure), used by the test suite as an independent check of dflash's drafter
graph. Needs only numpy.

    python tools/oracle/drafter_ref.py --drafter DIR --target DIR --input case.json [--window W|none]

case.json: {"features": [[...n*H floats...], ...] (context rows, positions 0..rows-1),
            "last_token": int, "block_size": int, "windows": optional per-layer list (int | null)}
prints {"logits": [[...V...] x B], "argmax": [B ints]} for block rows 0..B-1.

Sliding windows (z-lab's drafter under flash-attention-2, see docs/DRAFTERS.md): a layer with
window w lets the query at absolute position q see the key at position p iff |q - p| <= w - 1,
context keys and block keys alike (flash_attn window_size = (w - 1, w - 1), non-causal, keys
and queries aligned at the end). The windows come from, in order: --window (one W for every
layer that the config makes sliding, or "none"), case.json "windows", and the drafter config as
transformers' Qwen3Config derives them (use_sliding_window, sliding_window, layer_types,
max_window_layers). Drafters without those keys get full attention, as before.
"""
import argparse
import json
import pathlib
import struct

import numpy as np


def load_safetensors(directory: pathlib.Path) -> dict[str, np.ndarray]:
    files = sorted(directory.glob("*.safetensors"))
    out = {}
    for f in files:
        raw = f.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        base = 8 + n
        for name, t in header.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            buf = raw[base + a: base + b]
            if t["dtype"] == "F32":
                arr = np.frombuffer(buf, dtype="<f4")
            elif t["dtype"] == "BF16":
                arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            elif t["dtype"] == "F16":
                arr = np.frombuffer(buf, dtype="<f2").astype(np.float32)
            else:
                raise ValueError(f"{f}: unsupported dtype {t['dtype']}")
            out[name.removeprefix("model.")] = arr.reshape(t["shape"]).astype(np.float32)
    return out


def rms_norm(x, w, eps):
    x = x.astype(np.float32)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, positions, theta):
    # x: (T, heads, hd); HF rotate_half convention (first half / second half).
    hd = x.shape[-1]
    inv_freq = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
    freqs = positions[:, None].astype(np.float32) * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    half = hd // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def config_windows(dcfg):
    """Per-layer window (or None) as z-lab's DFlashDraftModel reads them through Qwen3Config
    (transformers 4.57.1): sliding_window exists only when use_sliding_window is true."""
    n = dcfg["num_hidden_layers"]
    window = dcfg.get("sliding_window", 4096) if dcfg.get("use_sliding_window", False) else None
    types = dcfg.get("layer_types")
    if types is None:
        first = dcfg.get("max_window_layers", 28)
        types = ["sliding_attention" if window is not None and i >= first else "full_attention" for i in range(n)]
    return [window if t == "sliding_attention" else None for t in types]


def visible(q_pos, k_pos, window):
    """Boolean (Tq, Tk): which keys each query attends to. Non-causal; a window keeps the keys
    within window - 1 positions on either side of the query."""
    vis = np.ones((len(q_pos), len(k_pos)), dtype=bool)
    if window is not None:
        vis &= np.abs(q_pos[:, None] - k_pos[None, :]) <= window - 1
    return vis


def drafter_forward(dw, dcfg, tw, tcfg, features, last_token, block, windows=None):
    H = dcfg["hidden_size"]
    nh, kvh = dcfg["num_attention_heads"], dcfg["num_key_value_heads"]
    hd = dcfg.get("head_dim") or H // nh
    eps, theta = dcfg.get("rms_norm_eps", 1e-6), dcfg.get("rope_theta", 10000.0)
    dflash = dcfg.get("dflash_config", {})
    mask = dflash["mask_token_id"]
    scale = dflash.get("input_embedding_scale", 1.0)
    embed = tw["embed_tokens.weight"]
    lm_head = tw.get("lm_head.weight", embed) if not tcfg.get("tie_word_embeddings") else embed

    feats = np.asarray(features, dtype=np.float32)            # (C, n*H)
    C = feats.shape[0]
    ctx = rms_norm(feats @ dw["fc.weight"].T, dw["hidden_norm.weight"], eps)  # (C, H)
    ids = [last_token] + [mask] * (block - 1)
    h = embed[ids] * scale                                    # (B, H)
    ctx_pos = np.arange(C)
    blk_pos = np.arange(C, C + block)
    if windows is None:
        windows = config_windows(dcfg)
    for i in range(dcfg["num_hidden_layers"]):
        vis = visible(blk_pos, np.concatenate([ctx_pos, blk_pos]), windows[i])
        p = f"layers.{i}."
        hn = rms_norm(h, dw[p + "input_layernorm.weight"], eps)
        # attention_bias (the gpt-oss drafters): q/k/v/o biases; absent = none
        bias = {n: dw.get(p + f"self_attn.{n}_proj.bias", np.float32(0)) for n in "qkvo"}
        q = (hn @ dw[p + "self_attn.q_proj.weight"].T + bias["q"]).reshape(block, nh, hd)
        q = rms_norm(q, dw[p + "self_attn.q_norm.weight"], eps)
        k = np.concatenate([ctx @ dw[p + "self_attn.k_proj.weight"].T, hn @ dw[p + "self_attn.k_proj.weight"].T]) + bias["k"]
        v = np.concatenate([ctx @ dw[p + "self_attn.v_proj.weight"].T, hn @ dw[p + "self_attn.v_proj.weight"].T]) + bias["v"]
        k = rms_norm(k.reshape(C + block, kvh, hd), dw[p + "self_attn.k_norm.weight"], eps)
        v = v.reshape(C + block, kvh, hd)
        q = rope(q, blk_pos, theta)
        k = rope(k, np.concatenate([ctx_pos, blk_pos]), theta)
        out = np.zeros((block, nh, hd), dtype=np.float32)
        group = nh // kvh
        for head in range(nh):
            kv = head // group
            s = (q[:, head, :] @ k[:, kv, :].T) / np.sqrt(hd)  # non-causal over [ctx ; block]
            out[:, head, :] = softmax(np.where(vis, s, -np.inf)) @ v[:, kv, :]
        h = h + out.reshape(block, nh * hd) @ dw[p + "self_attn.o_proj.weight"].T + bias["o"]
        x = rms_norm(h, dw[p + "post_attention_layernorm.weight"], eps)
        gate = x @ dw[p + "mlp.gate_proj.weight"].T
        up = x @ dw[p + "mlp.up_proj.weight"].T
        h = h + ((gate / (1 + np.exp(-gate))) * up) @ dw[p + "mlp.down_proj.weight"].T
    h = rms_norm(h, dw["norm.weight"], eps)
    return h @ lm_head.T                                      # (B, V)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drafter", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--window", help="window W for the layers the config makes sliding (all layers if none are), or 'none'")
    a = ap.parse_args()
    d, t = pathlib.Path(a.drafter), pathlib.Path(a.target)
    dcfg = json.loads((d / "config.json").read_text())
    tcfg = json.loads((t / "config.json").read_text())
    case = json.loads(pathlib.Path(a.input).read_text())
    windows = case.get("windows")
    if a.window is not None:
        sliding = [w is not None for w in config_windows(dcfg)]
        if not any(sliding):
            sliding = [True] * dcfg["num_hidden_layers"]
        windows = [None if a.window == "none" or not s else int(a.window) for s in sliding]
    logits = drafter_forward(load_safetensors(d), dcfg, load_safetensors(t), tcfg,
                             case["features"], case["last_token"], case["block_size"], windows)
    print(json.dumps({"logits": logits.tolist(), "argmax": logits.argmax(-1).tolist()}))


if __name__ == "__main__":
    main()
