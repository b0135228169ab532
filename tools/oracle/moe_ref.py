"""A plain numpy Qwen3-MoE target forward, written from the equations (Qwen3 attention + the
sparse MoE block of transformers' Qwen3MoeSparseMoeBlock), checked by the test suite against the
transformers goldens of the tiny MoE fixtures. It documents in runnable form what
native/models/moe.h computes. Needs only numpy.

    python tools/oracle/moe_ref.py --model DIR --ids '[1, 2, 3]' [--greedy N]

prints {"logits": [[...V...] x T], "hidden_after_layer": [[[...H...] x T] x L], "greedy": [...]};
hidden_after_layer follows transformers' output_hidden_states: the last entry is after the final
norm (so a DFlash target_layer_id of L - 1 reads normed states, in z-lab's code as well).

MoE block, per token x (H,):
  router logits r = W_router x (E,); p = softmax(r) in f32
  S = indices of the k largest p (k = num_experts_per_tok); w_e = p_e for e in S
  if norm_topk_prob: w_e /= sum_{e in S} p_e
  y = sum_{e in S} w_e * down_e(silu(gate_e x) * up_e x)
A layer is sparse iff i not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0; other
layers use a dense SiLU MLP of intermediate_size. Qwen3-MoE has no shared expert.
"""
import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from drafter_ref import load_safetensors, rms_norm, rope, softmax  # noqa: E402


def silu_mlp(x, gate, up, down):
    g = x @ gate.T
    return ((g / (1 + np.exp(-g))) * (x @ up.T)) @ down.T


def moe_routing(x, router, k, norm_topk_prob):
    """(T, H) -> selected expert ids (T, k) in descending probability, weights (T, k)."""
    p = softmax((x @ router.T).astype(np.float32))
    order = np.argsort(-p, axis=-1, kind="stable")[:, :k]
    w = np.take_along_axis(p, order, axis=-1)
    if norm_topk_prob:
        w = w / w.sum(axis=-1, keepdims=True)
    return order, w


def moe_mlp(x, router, gate, up, down, k, norm_topk_prob):
    """x (T, H); router (E, H); gate, up (E, I, H); down (E, H, I) -> (T, H)."""
    ids, w = moe_routing(x, router, k, norm_topk_prob)
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(k):
            e = ids[t, j]
            out[t] += w[t, j] * silu_mlp(x[t:t + 1], gate[e], up[e], down[e])[0]
    return out


def is_sparse(cfg, i):
    if cfg.get("model_type") != "qwen3_moe":
        return False
    n = cfg.get("num_experts", cfg.get("num_local_experts", 128))
    return i not in (cfg.get("mlp_only_layers") or []) and n > 0 and (i + 1) % cfg.get("decoder_sparse_step", 1) == 0


def forward(w, cfg, ids):
    H, nh, kvh = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    E = cfg.get("num_experts", cfg.get("num_local_experts"))
    T = len(ids)
    pos = np.arange(T)
    causal = np.tril(np.ones((T, T), dtype=bool))
    h = w["embed_tokens.weight"][ids]
    hidden = []
    for i in range(cfg["num_hidden_layers"]):
        p = f"layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        q = rms_norm((x @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd), w[p + "self_attn.q_norm.weight"], eps)
        k = rms_norm((x @ w[p + "self_attn.k_proj.weight"].T).reshape(T, kvh, hd), w[p + "self_attn.k_norm.weight"], eps)
        v = (x @ w[p + "self_attn.v_proj.weight"].T).reshape(T, kvh, hd)
        q, k = rope(q, pos, theta), rope(k, pos, theta)
        out = np.zeros((T, nh, hd), dtype=np.float32)
        for head in range(nh):
            kv = head // (nh // kvh)
            s = np.where(causal, (q[:, head] @ k[:, kv].T) / np.sqrt(hd), -np.inf)
            out[:, head] = softmax(s) @ v[:, kv]
        h = h + out.reshape(T, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        if is_sparse(cfg, i):
            stack = lambda n: np.stack([w[f"{p}mlp.experts.{e}.{n}.weight"] for e in range(E)])  # noqa: E731
            h = h + moe_mlp(x, w[p + "mlp.gate.weight"], stack("gate_proj"), stack("up_proj"), stack("down_proj"),
                            cfg.get("num_experts_per_tok", 8), cfg.get("norm_topk_prob", False))
        else:
            h = h + silu_mlp(x, w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"], w[p + "mlp.down_proj.weight"])
        hidden.append(h)
    h = rms_norm(h, w["norm.weight"], eps)
    hidden[-1] = h  # transformers' hidden_states[-1] is the final norm's output, not the last layer's
    logits = h @ w.get("lm_head.weight", w["embed_tokens.weight"]).T
    return logits, hidden


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--greedy", type=int, default=0)
    a = ap.parse_args()
    d = pathlib.Path(a.model)
    cfg = json.loads((d / "config.json").read_text())
    w = load_safetensors(d)  # names without the "model." prefix
    if "lm_head.weight" not in w and not cfg.get("tie_word_embeddings"):
        raise SystemExit("lm_head.weight missing")
    ids = json.loads(a.ids)
    logits, hidden = forward(w, cfg, ids)
    seq = list(ids)
    for _ in range(a.greedy):  # greedy by definition: a full forward per step
        seq.append(int(forward(w, cfg, seq)[0][-1].argmax()))
    print(json.dumps({"logits": logits.tolist(), "hidden_after_layer": [x.tolist() for x in hidden], "greedy": seq[len(ids):]}))


if __name__ == "__main__":
    main()
