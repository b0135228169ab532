#!/usr/bin/env python3
"""Consistency checks for a trained pair (fast; run after the --tiny smoke tests in CI):
 1. KV-cached greedy generation == argmax of the full causal forward (target).
 2. The multi-anchor masked drafter forward used for training == a plain numpy single-block
    forward written the way the engine runs it (context = exactly the rows before the anchor,
    K/V = [ctx ; block], no mask), for several anchors.
 3. Saved files: tensor names/shapes match config.json, mask token = last id.

  python tools/train/check.py --target /tmp/t --drafter /tmp/d
"""
import argparse, json, os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import qwen3  # noqa: E402


def np_rms(x, w, eps):
    import numpy as np
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def np_rope(x, pos, theta):
    import numpy as np
    d = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    f = pos[:, None] * inv
    emb = np.concatenate([f, f], -1)
    c, s = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * c + rot * s


def np_drafter_block(dp, dc, embed, head, ctx_feats, anchor_tok, t, mask_id, B):
    """Engine-style single block: ctx_feats [t, n*H] are the rows before the anchor at position t."""
    import numpy as np
    eps, d, nh, kvh = dc["rms_norm_eps"], dc["head_dim"], dc["num_attention_heads"], dc["num_key_value_heads"]
    ctx = np_rms(ctx_feats @ dp["fc.weight"].T, dp["hidden_norm.weight"], eps)
    x = embed[np.array([anchor_tok] + [mask_id] * (B - 1))]
    cpos, bpos = np.arange(t, dtype=np.float64), np.arange(t, t + B, dtype=np.float64)
    for i in range(dc["num_hidden_layers"]):
        P = lambda n: dp[f"layers.{i}.{n}"]
        h = np_rms(x, P("input_layernorm.weight"), eps)
        q = np_rope(np_rms((h @ P("self_attn.q_proj.weight").T).reshape(B, nh, d), P("self_attn.q_norm.weight"), eps), bpos, dc["rope_theta"])
        kin = np.concatenate([ctx, h])
        k = (kin @ P("self_attn.k_proj.weight").T).reshape(-1, kvh, d)
        k = np_rope(np_rms(k, P("self_attn.k_norm.weight"), eps), np.concatenate([cpos, bpos]), dc["rope_theta"])
        v = (kin @ P("self_attn.v_proj.weight").T).reshape(-1, kvh, d)
        k, v = np.repeat(k, nh // kvh, 1), np.repeat(v, nh // kvh, 1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", s, v).reshape(B, nh * d)
        x = x + o @ P("self_attn.o_proj.weight").T
        h = np_rms(x, P("post_attention_layernorm.weight"), eps)
        g = h @ P("mlp.gate_proj.weight").T
        x = x + ((g / (1 + np.exp(-g))) * (h @ P("mlp.up_proj.weight").T)) @ P("mlp.down_proj.weight").T
    x = np_rms(x, dp["norm.weight"], eps)
    return x[1:] @ head.T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--drafter", required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    qwen3.setup_threads(a.threads)
    import numpy as np, jax, jax.numpy as jnp
    from tokenizers import Tokenizer
    import drafter as D

    tc = json.load(open(os.path.join(a.target, "config.json")))
    dc = json.load(open(os.path.join(a.drafter, "config.json")))
    tp = qwen3.load_safetensors(os.path.join(a.target, "model.safetensors"))
    dp = qwen3.load_safetensors(os.path.join(a.drafter, "model.safetensors"))
    tok = Tokenizer.from_file(os.path.join(a.target, "tokenizer.json"))
    V, H = tc["vocab_size"], tc["hidden_size"]
    mask_id = dc["dflash_config"]["mask_token_id"]
    ids = dc["dflash_config"]["target_layer_ids"]
    assert tok.get_vocab_size() == V and mask_id == V - 1 and tok.id_to_token(mask_id) == "<|mask|>"
    assert tok.id_to_token(tc["eos_token_id"]) == "<|endoftext|>"
    # 3. names and shapes
    exp = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
    if not tc["tie_word_embeddings"]:
        exp["lm_head.weight"] = (V, H)
    def layer_shapes(pre, c):
        d, nh, kvh, I = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"]
        return {pre + "input_layernorm.weight": (H,), pre + "post_attention_layernorm.weight": (H,),
                pre + "self_attn.q_proj.weight": (nh * d, H), pre + "self_attn.k_proj.weight": (kvh * d, H),
                pre + "self_attn.v_proj.weight": (kvh * d, H), pre + "self_attn.o_proj.weight": (H, nh * d),
                pre + "self_attn.q_norm.weight": (d,), pre + "self_attn.k_norm.weight": (d,),
                pre + "mlp.gate_proj.weight": (I, H), pre + "mlp.up_proj.weight": (I, H), pre + "mlp.down_proj.weight": (H, I)}
    for i in range(tc["num_hidden_layers"]):
        exp.update(layer_shapes(f"model.layers.{i}.", tc))
    assert {k: v.shape for k, v in tp.items()} == exp, "target tensor names/shapes"
    dexp = {"fc.weight": (H, len(ids) * H), "hidden_norm.weight": (H,), "norm.weight": (H,)}
    for i in range(dc["num_hidden_layers"]):
        dexp.update(layer_shapes(f"layers.{i}.", dc))
    assert {k: v.shape for k, v in dp.items()} == dexp, "drafter tensor names/shapes"
    assert dc["num_target_layers"] == tc["num_hidden_layers"] and max(ids) < tc["num_hidden_layers"]
    print("files: ok")

    # 1. generation vs full forward
    T, P = 48, 12
    prompt = np.asarray([tok.encode("def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n    return a + b\n\ndef f(x):\n").ids[:P]], np.int32)
    P = prompt.shape[1]
    buf = np.zeros((1, T), np.int32); buf[0, :P] = prompt[0]
    jtp = {k: jnp.asarray(v) for k, v in tp.items()}
    seq = np.asarray(qwen3.target_generate(jtp, tc, jnp.asarray(buf), P, T))
    logits, hid = qwen3.target_forward(jtp, tc, jnp.asarray(seq), tuple(ids))
    am = np.asarray(jnp.argmax(logits, -1))
    lg = np.asarray(logits)
    agree = (am[0, P - 1:T - 1] == seq[0, P:])
    # allow near-ties only
    for j in np.where(~agree)[0]:
        row = lg[0, P - 1 + j]
        top2 = np.sort(row)[-2:]
        assert top2[1] - top2[0] < 1e-3, f"generation disagrees with forward at {P + j}"
    assert np.array_equal(seq[0, :P], prompt[0])
    print(f"generation vs forward: ok ({agree.mean():.3f} exact)")

    # 2. drafter multi-anchor vs engine-style single block
    B = dc["block_size"]
    feats = np.asarray(jnp.concatenate(hid, -1))
    embed = tp["model.embed_tokens.weight"]
    head = embed if tc["tie_word_embeddings"] else tp["lm_head.weight"]
    anchors = np.array([[1, 5, P, T - B]], np.int32)
    jdp = {k: jnp.asarray(v) for k, v in dp.items()}
    got = np.asarray(D.drafter_forward(jdp, dc, jnp.asarray(embed), jnp.asarray(head), jnp.asarray(feats),
                                       jnp.asarray(seq), jnp.asarray(anchors), mask_id, B))[0]
    for j, t in enumerate(anchors[0]):
        ref = np_drafter_block({k: v.astype(np.float64) for k, v in dp.items()}, dc, embed.astype(np.float64),
                               head.astype(np.float64), feats[0, :t].astype(np.float64), int(seq[0, t]), int(t), mask_id, B)
        err = np.abs(got[j] - ref).max() / (np.abs(ref).max() + 1e-9)
        assert err < 1e-3, f"anchor {t}: rel err {err}"
    print("drafter multi-anchor vs single block: ok")


if __name__ == "__main__":
    main()
