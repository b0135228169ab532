"""Qwen3-architecture building blocks in plain JAX, shared by target.py and drafter.py (a Llama
target is the same forward without the q/k norms).

Parameters live in a flat dict keyed by the Hugging Face tensor names, with Linear weights in
torch layout [out, in] (y = x @ W.T), so saving is a straight dump to safetensors.
"""
import json, os, pickle, time

import numpy as np


def setup_threads(threads):
    """Limit XLA:CPU threads. Must run before `import jax`."""
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "multi_thread_eigen" not in flags:
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["XLA_FLAGS"] = flags.strip()
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(v, str(threads))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def jnp_():
    import jax.numpy as jnp
    return jnp


# ----------------------------------------------------------------------------- layers

def rms_norm(x, w, eps):
    jnp = jnp_()
    x32 = x.astype(jnp.float32)
    var = jnp.mean(x32 * x32, axis=-1, keepdims=True)
    return (x32 * jnp.reciprocal(jnp.sqrt(var + eps))) * w


def rope_cos_sin(positions, head_dim, theta):
    """HF Qwen3RotaryEmbedding: inv_freq = theta^-(arange(0,d,2)/d), emb = cat(freqs, freqs)."""
    jnp = jnp_()
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x, cos, sin):
    """x [..., T, heads, d]; cos/sin [..., T, d] (broadcast over heads)."""
    jnp = jnp_()
    d = x.shape[-1]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    rot = jnp.concatenate([-x2, x1], axis=-1)
    return x * cos[..., None, :] + rot * sin[..., None, :]


def linear(x, w):
    return x @ w.T


def mlp(p, pre, x):
    import jax
    return linear(jax.nn.silu(linear(x, p[pre + "mlp.gate_proj.weight"])) * linear(x, p[pre + "mlp.up_proj.weight"]),
                  p[pre + "mlp.down_proj.weight"])


def qkv(p, pre, h, cfg):
    """h [..., T, H] -> q [..., T, nh, d], k, v [..., T, kvh, d] (q/k normed, no RoPE yet)."""
    d, nh, kvh, eps = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    q = linear(h, p[pre + "self_attn.q_proj.weight"]).reshape(*h.shape[:-1], nh, d)
    k = linear(h, p[pre + "self_attn.k_proj.weight"]).reshape(*h.shape[:-1], kvh, d)
    v = linear(h, p[pre + "self_attn.v_proj.weight"]).reshape(*h.shape[:-1], kvh, d)
    if pre + "self_attn.q_norm.weight" in p:  # Qwen3 normalises q/k per head; Llama does not
        q = rms_norm(q, p[pre + "self_attn.q_norm.weight"], eps)
        k = rms_norm(k, p[pre + "self_attn.k_norm.weight"], eps)
    return q, k, v


def repeat_kv(k, groups):
    jnp = jnp_()
    return k if groups == 1 else jnp.repeat(k, groups, axis=-2)


# ----------------------------------------------------------------------------- target

def target_layer_names(i):
    pre = f"model.layers.{i}."
    return [pre + n for n in (
        "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
        "self_attn.v_proj.weight", "self_attn.o_proj.weight", "self_attn.q_norm.weight",
        "self_attn.k_norm.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight",
        "mlp.up_proj.weight", "mlp.down_proj.weight")]


def init_decoder_layer(rng, pre, cfg, n_layers_total):
    """Qwen3 decoder layer params (normal(0, 0.02) linears; residual-out scaled by depth)."""
    H, I, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    nh, kvh = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    std, ostd = 0.02, 0.02 / np.sqrt(2 * n_layers_total)
    n = lambda shape, s: (rng.standard_normal(shape) * s).astype(np.float32)
    return {
        pre + "input_layernorm.weight": np.ones(H, np.float32),
        pre + "self_attn.q_proj.weight": n((nh * d, H), std),
        pre + "self_attn.k_proj.weight": n((kvh * d, H), std),
        pre + "self_attn.v_proj.weight": n((kvh * d, H), std),
        pre + "self_attn.o_proj.weight": n((H, nh * d), ostd),
        pre + "self_attn.q_norm.weight": np.ones(d, np.float32),
        pre + "self_attn.k_norm.weight": np.ones(d, np.float32),
        pre + "post_attention_layernorm.weight": np.ones(H, np.float32),
        pre + "mlp.gate_proj.weight": n((I, H), std),
        pre + "mlp.up_proj.weight": n((I, H), std),
        pre + "mlp.down_proj.weight": n((H, I), ostd),
    }


def init_target(cfg, seed=0):
    rng = np.random.default_rng(seed)
    V, H, L = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
    p = {"model.embed_tokens.weight": (rng.standard_normal((V, H)) * 0.02).astype(np.float32)}
    for i in range(L):
        p.update(init_decoder_layer(rng, f"model.layers.{i}.", cfg, L))
    p["model.norm.weight"] = np.ones(H, np.float32)
    if not cfg["tie_word_embeddings"]:
        p["lm_head.weight"] = (rng.standard_normal((V, H)) * 0.02).astype(np.float32)
    return p


def lm_head(p, cfg):
    return p["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else p["lm_head.weight"]


def target_forward(p, cfg, tokens, want_hidden=()):
    """Causal forward. tokens [B, T] -> (logits [B, T, V] f32, [hidden_states[id + 1] for id in want_hidden]).
    hidden_states[i] follows HF: [0] = embeddings, [i] = output of layer i-1."""
    import jax
    jnp = jnp_()
    B, T = tokens.shape
    d, nh, kvh, eps = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    x = p["model.embed_tokens.weight"][tokens]
    cos, sin = rope_cos_sin(jnp.arange(T), d, cfg["rope_theta"])
    causal = jnp.tril(jnp.ones((T, T), bool))
    hidden = []
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q, k, v = qkv(p, pre, h, cfg)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = repeat_kv(k, nh // kvh), repeat_kv(v, nh // kvh)
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
        s = jnp.where(causal, s, -1e30)
        a = jax.nn.softmax(s, axis=-1)
        o = jnp.einsum("bhqk,bkhd->bqhd", a, v).reshape(B, T, nh * d)
        x = x + linear(o, p[pre + "self_attn.o_proj.weight"])
        x = x + mlp(p, pre, rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps))
        if i in want_hidden:
            hidden.append(x)
    x = rms_norm(x, p["model.norm.weight"], eps)
    logits = linear(x, lm_head(p, cfg)).astype(jnp.float32)
    hidden = [hidden[list(sorted(want_hidden)).index(i)] for i in want_hidden]
    return logits, hidden


def target_generate(p, cfg, prompt, prompt_len, total_len, want_hidden=()):
    """Greedy generation with a KV cache. prompt [B, total_len] (row b uses its first prompt_len[b]
    columns; prompt_len is a scalar or [B]), returns tokens [B, total_len] = prompt + greedy
    continuation. One token per step, lax.scan over positions.
    With want_hidden (layer ids), returns (tokens, feats [B, total_len, len(ids) * H]): the outputs
    of those layers at every position (HF hidden_states[id + 1]; the last position is zeros, it is
    never fed), i.e. target_forward's features of the generated sequence, without a second pass."""
    import jax
    jnp = jnp_()
    B = prompt.shape[0]
    L, d = cfg["num_hidden_layers"], cfg["head_dim"]
    nh, kvh, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    T = total_len
    cos_all, sin_all = rope_cos_sin(jnp.arange(T), d, cfg["rope_theta"])
    kc0 = jnp.zeros((L, B, T, kvh, d), jnp.float32)
    vc0 = jnp.zeros((L, B, T, kvh, d), jnp.float32)

    def step(carry, pos):
        kc, vc, tok = carry
        x = p["model.embed_tokens.weight"][tok][:, None, :]  # [B,1,H]
        cos, sin = cos_all[pos][None], sin_all[pos][None]
        valid = jnp.arange(T) <= pos
        for i in range(L):
            pre = f"model.layers.{i}."
            h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
            q, k, v = qkv(p, pre, h, cfg)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            kc = kc.at[i, :, pos].set(k[:, 0])
            vc = vc.at[i, :, pos].set(v[:, 0])
            qg = q[:, 0].reshape(B, kvh, nh // kvh, d)   # grouped heads: no repeated K/V copies
            s = jnp.einsum("bkgd,btkd->bkgt", qg, kc[i]) / np.sqrt(d)
            s = jnp.where(valid, s, -1e30)
            a = jax.nn.softmax(s, axis=-1)
            o = jnp.einsum("bkgt,btkd->bkgd", a, vc[i]).reshape(B, 1, nh * d)
            x = x + linear(o, p[pre + "self_attn.o_proj.weight"])
            x = x + mlp(p, pre, rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps))
            if i in want_hidden:
                hid[i] = x[:, 0]
        x = rms_norm(x, p["model.norm.weight"], eps)
        nxt = jnp.argmax(linear(x[:, 0], lm_head(p, cfg)), axis=-1).astype(jnp.int32)
        nxt = jnp.where(pos + 1 < jnp.asarray(prompt_len), prompt[:, jnp.minimum(pos + 1, T - 1)], nxt)
        feats = jnp.concatenate([hid[i] for i in want_hidden], -1) if want_hidden else jnp.zeros((B, 0))
        return (kc, vc, nxt), (nxt, feats)

    hid = {}
    (_, _, _), (outs, feats) = jax.lax.scan(step, (kc0, vc0, prompt[:, 0].astype(jnp.int32)), jnp.arange(T - 1))
    tokens = jnp.concatenate([prompt[:, :1].astype(jnp.int32), outs.T], axis=1)
    if not want_hidden:
        return tokens
    feats = jnp.concatenate([feats.transpose(1, 0, 2), jnp.zeros((B, 1, feats.shape[-1]), feats.dtype)], axis=1)
    return tokens, feats


# ----------------------------------------------------------------------------- I/O

def save_safetensors(params, path, dtype="float32"):
    from safetensors.numpy import save_file
    import ml_dtypes
    dt = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}[dtype]
    save_file({k: np.ascontiguousarray(np.asarray(v, np.float32).astype(dt)) for k, v in sorted(params.items())},
              path, metadata={"format": "pt"})


def load_safetensors(path):
    from safetensors.numpy import load_file
    return {k: np.asarray(v, np.float32) for k, v in load_file(path).items()}


def save_checkpoint(path, state):
    import jax
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(jax.device_get(state), f)
    os.replace(tmp, path)


def load_checkpoint(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def make_optimizer(lr, steps, warmup, weight_decay, clip=1.0, final_frac=0.1):
    import optax
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, warmup), max(steps, warmup + 1), lr * final_frac)
    # no weight decay on norm weights (1-D)
    decay_mask = lambda params: {k: v.ndim > 1 for k, v in params.items()}
    return optax.chain(optax.clip_by_global_norm(clip),
                       optax.adamw(sched, b1=0.9, b2=0.95, eps=1e-8, weight_decay=weight_decay, mask=decay_mask)), sched


def load_tokens(tokenizer_path, text_path, cache_path=None, max_bytes=None):
    """Tokenize a corpus text file (documents separated by <|endoftext|>) into one int32 stream."""
    if cache_path and os.path.exists(cache_path):
        return np.load(cache_path)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_path)
    text = open(text_path, encoding="utf-8").read()
    if max_bytes:
        text = text[:max_bytes]
    docs = text.split("<|endoftext|>")
    ids = []
    for enc in tok.encode_batch([d for d in docs if d]):
        ids.extend(enc.ids)
        ids.append(0)
    arr = np.asarray(ids, np.int32)
    if cache_path:
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        np.save(cache_path, arr)
    return arr


def count_params(p):
    return int(sum(np.prod(v.shape) for v in p.values()))
