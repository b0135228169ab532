#!/usr/bin/env python3
"""Train a DFlash drafter (z-lab layout) for a trained Qwen3 target, in JAX.

  python tools/train/drafter.py --target models/code-pair/target --out models/code-pair/drafter
  python tools/train/drafter.py --target /tmp/t --out /tmp/d --tiny     # < 1 min smoke test

Recipe (paper App. A.1, scaled down), self-distillation on target-regenerated text:
 1. data: random windows of the train split give prompts of P tokens (P drawn per generation
    batch); the frozen target greedily continues each to --seq-len tokens (KV-cached, JAX).
    For an anchor t >= P-1 the tokens t+1 .. t+B-1 of such a sequence ARE the target's greedy
    continuation of the prefix up to t, i.e. exactly what greedy verification accepts.
    Labels after a generated <|endoftext|> get weight 0 (the engine stops there).
 2. features: target hidden states after dflash_config.target_layer_ids (HF hidden_states[id+1]),
    concatenated, one causal pass per sequence (what the engine's verify pass emits).
 3. training: per sequence --anchors random anchors share that one pass; the block for anchor t
    is [token_t, mask x (B-1)] at positions t..t+B-1; its queries attend (non-causally) to the
    fused context rows < t (masked) and to the whole block. Loss = cross-entropy of block
    positions k = 1..B-1 against tokens t+k with weights w_k = exp(-(k-1)/gamma), gamma = 7*B/16.
    AdamW + warmup-cosine. The target's embed_tokens and lm_head are frozen (not trained/saved).
 4. evaluation: simulated greedy speculative decoding on the held-out prompt set
    (bench/prompts/heldout-code.jsonl): the target's greedy output is generated once, then the
    decode loop is walked exactly as the engine does (anchor = last committed token, draft B-1,
    accept the matching prefix, + bonus token). Reports tau = mean(accepted + 1) per block and
    the per-position acceptance rate (accepted_at_pos / drafts, as vLLM).
"""
import argparse, json, math, os, shutil, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import qwen3  # noqa: E402


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, help="trained target dir (HF Qwen3 layout) or a llama GGUF file")
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default=None, help="checkpoint/data dir (default: <out>/../work-drafter)")
    ap.add_argument("--train-text", default=os.path.join(HERE, "data", "train.txt"))
    ap.add_argument("--prompts", default=os.path.join(REPO, "bench", "prompts", "heldout-code.jsonl"))
    ap.add_argument("--chat-prompts", default=None,
                    help="jsonl of encoded chat prompts (tools/train/encode-chat.mjs): the target answers each "
                         "instead of continuing --train-text windows")
    ap.add_argument("--heldout", default=None,
                    help="comma list of encoded held-out jsonl files for the simulated tau (chat targets)")
    ap.add_argument("--mask-token-id", type=int, default=None, help="default: the tokenizer's <|mask|>")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--target-layer-ids", default=None, help="comma list (default [1, L/2, L-2])")
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--gamma", type=float, default=None, help="loss decay (default 7*B/16)")
    ap.add_argument("--num-seqs", type=int, default=2048, help="target-regenerated training sequences")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--prompt-min", type=int, default=16)
    ap.add_argument("--prompt-max", type=int, default=96)
    ap.add_argument("--gen-batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--anchors", type=int, default=32, help="anchors per sequence")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--eval-len", type=int, default=256, help="total length of held-out generations")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-simulate", action="store_true",
                    help="skip the simulated tau (slow at a 49K vocabulary: measure with bench:speculative instead)")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop training early (and export) after this")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes for a < 1 minute smoke test")
    a = ap.parse_args()
    if a.tiny:
        a.num_seqs, a.seq_len, a.prompt_min, a.prompt_max, a.gen_batch = 32, 64, 8, 24, 32
        a.steps, a.batch, a.anchors, a.warmup, a.ckpt_every, a.eval_len = 60, 4, 8, 5, 30, 96
        a.lr = 3e-3
    if a.gamma is None:
        a.gamma = 7.0 * a.block_size / 16
    if a.work is None:
        a.work = os.path.join(os.path.dirname(os.path.abspath(a.out)), "work-drafter")
    return a


def drafter_forward(dp, dcfg, embed, head, feats, tokens, anchors, mask_id, B):
    """Multi-anchor DFlash drafter forward.
    feats [N, T, n*H] target features, tokens [N, T], anchors [N, A] (>= 1).
    Returns logits [N, A, B-1, V] for block positions 1..B-1."""
    import jax, jax.numpy as jnp
    from qwen3 import rms_norm, linear, qkv, apply_rope, rope_cos_sin, mlp
    N, T = tokens.shape
    A = anchors.shape[1]
    d, nh, kvh, eps = dcfg["head_dim"], dcfg["num_attention_heads"], dcfg["num_key_value_heads"], dcfg["rms_norm_eps"]
    g = nh // kvh
    ctx = rms_norm(linear(feats, dp["fc.weight"]), dp["hidden_norm.weight"], eps)          # [N,T,H]
    first = jnp.take_along_axis(tokens, anchors, axis=1)                                   # [N,A]
    blk = jnp.concatenate([first[..., None], jnp.full((N, A, B - 1), mask_id, tokens.dtype)], -1)
    x = embed[blk]                                                                         # [N,A,B,H]
    bcos, bsin = rope_cos_sin(anchors[..., None] + jnp.arange(B), d, dcfg["rope_theta"])   # [N,A,B,d]
    ccos, csin = rope_cos_sin(jnp.arange(T), d, dcfg["rope_theta"])                        # [T,d]
    visible = (jnp.arange(T)[None, None, :] < anchors[..., None])[:, :, None, None, None, :]
    for i in range(dcfg["num_hidden_layers"]):
        pre = f"layers.{i}."
        h = rms_norm(x, dp[pre + "input_layernorm.weight"], eps)
        q, kb, vb = qkv(dp, pre, h, dcfg)
        q, kb = apply_rope(q, bcos, bsin), apply_rope(kb, bcos, bsin)
        # context K/V: this layer's k_proj/v_proj (+ k_norm) of the fused context, no input_layernorm
        kc = linear(ctx, dp[pre + "self_attn.k_proj.weight"]).reshape(N, T, kvh, d)
        vc = linear(ctx, dp[pre + "self_attn.v_proj.weight"]).reshape(N, T, kvh, d)
        kc = apply_rope(rms_norm(kc, dp[pre + "self_attn.k_norm.weight"], eps), ccos, csin)
        qg = q.reshape(N, A, B, kvh, g, d) / math.sqrt(d)
        sc = jnp.einsum("nabkgd,ntkd->nabkgt", qg, kc)
        sc = jnp.where(visible, sc, -1e30)
        sb = jnp.einsum("nabkgd,nackd->nabkgc", qg, kb)
        att = jax.nn.softmax(jnp.concatenate([sc, sb], -1), axis=-1)
        o = (jnp.einsum("nabkgt,ntkd->nabkgd", att[..., :T], vc)
             + jnp.einsum("nabkgc,nackd->nabkgd", att[..., T:], vb)).reshape(N, A, B, nh * d)
        x = x + linear(o, dp[pre + "self_attn.o_proj.weight"])
        x = x + mlp(dp, pre, rms_norm(x, dp[pre + "post_attention_layernorm.weight"], eps))
    x = rms_norm(x, dp["norm.weight"], eps)
    return linear(x[:, :, 1:], head).astype(jnp.float32)


def init_drafter(dcfg, n_feats, seed):
    import numpy as np
    rng = np.random.default_rng(seed + 7)
    H = dcfg["hidden_size"]
    p = {"fc.weight": (rng.standard_normal((H, n_feats * H)) * 0.02).astype(np.float32),
         "hidden_norm.weight": np.ones(H, np.float32), "norm.weight": np.ones(H, np.float32)}
    for i in range(dcfg["num_hidden_layers"]):
        p.update(qwen3.init_decoder_layer(rng, f"layers.{i}.", dcfg, dcfg["num_hidden_layers"]))
    return p


def main():
    a = parse()
    qwen3.setup_threads(a.threads)
    import numpy as np
    import jax, jax.numpy as jnp, optax
    from tqdm import tqdm
    from tokenizers import Tokenizer

    t0 = time.time()
    if a.target.endswith(".gguf"):   # a llama GGUF (e.g. SmolLM2): prompts come encoded (--chat-prompts)
        from gguf_target import load_gguf_target
        tcfg, tnp, _ = load_gguf_target(a.target)
        tparams, tok = {k: jnp.asarray(v) for k, v in tnp.items()}, None
        del tnp
    else:
        tcfg = json.load(open(os.path.join(a.target, "config.json")))
        tparams = {k: jnp.asarray(v) for k, v in qwen3.load_safetensors(os.path.join(a.target, "model.safetensors")).items()}
        tok = Tokenizer.from_file(os.path.join(a.target, "tokenizer.json"))
    V, L, B = tcfg["vocab_size"], tcfg["num_hidden_layers"], a.block_size
    mask_id = a.mask_token_id if a.mask_token_id is not None else tok.token_to_id("<|mask|>")
    eos_id = tcfg["eos_token_id"]
    if a.chat_prompts is None:
        assert mask_id == V - 1
    if a.target_layer_ids:
        ids = [int(x) for x in a.target_layer_ids.split(",")]
    else:
        ids = sorted(set([1, L // 2, L - 2])) if L >= 4 else list(range(L))
    embed = tparams["model.embed_tokens.weight"]
    head = qwen3.lm_head(tparams, tcfg)

    dcfg = {
        "architectures": ["DFlashDraftModel"],
        "model_type": "qwen3",
        "block_size": B,
        "num_target_layers": L,
        "dflash_config": {"mask_token_id": mask_id, "target_layer_ids": ids},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "head_dim": tcfg["head_dim"],
        "hidden_act": "silu",
        "hidden_size": tcfg["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": tcfg["intermediate_size"],
        "max_position_embeddings": tcfg["max_position_embeddings"],
        "max_window_layers": a.layers,
        "num_attention_heads": tcfg["num_attention_heads"],
        "num_hidden_layers": a.layers,
        "num_key_value_heads": tcfg["num_key_value_heads"],
        "rms_norm_eps": tcfg["rms_norm_eps"],
        "rope_scaling": None,
        "rope_theta": tcfg["rope_theta"],
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": a.dtype,
        "transformers_version": "4.51.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": V,
    }
    os.makedirs(a.work, exist_ok=True)
    T = a.seq_len

    # ------------------------------------------------------------------ 1. regenerate data
    gen = jax.jit(lambda p, prompt, plen: qwen3.target_generate(p, tcfg, prompt, plen, prompt.shape[1]))
    data_path = os.path.join(a.work, f"regen-{'tiny' if a.tiny else 'full'}-{a.num_seqs}x{T}.npz")
    feats = None
    if a.chat_prompts:
        seqs, plens, feats = regenerate_chat(a, tcfg, tparams, ids)
    elif os.path.exists(data_path):
        z = np.load(data_path)
        seqs, plens = z["seqs"], z["plens"]
        print(f"loaded {len(seqs)} regenerated sequences from {data_path}", flush=True)
    else:
        train_ids = qwen3.load_tokens(os.path.join(a.target, "tokenizer.json"), a.train_text,
                                      None, 400_000 if a.tiny else None)
        rng = np.random.default_rng(a.seed + 99)
        seqs, plens = [], []
        for _ in tqdm(range(math.ceil(a.num_seqs / a.gen_batch)), desc="regenerate", dynamic_ncols=True):
            P = int(rng.integers(a.prompt_min, a.prompt_max + 1))
            starts = rng.integers(0, len(train_ids) - T, size=a.gen_batch)
            prompt = np.stack([train_ids[s:s + T] for s in starts])
            seqs.append(np.asarray(gen(tparams, jnp.asarray(prompt), jnp.int32(P))))
            plens += [P] * a.gen_batch
        seqs, plens = np.concatenate(seqs)[:a.num_seqs], np.asarray(plens[:a.num_seqs], np.int32)
        np.savez(data_path, seqs=seqs, plens=plens)
    gen_seconds = time.time() - t0
    # weight 0 for labels after the first generated eos (the engine stops there)
    pos = np.arange(T)[None, :]
    is_eos = (seqs == eos_id) & (pos >= plens[:, None])
    first_eos = np.where(is_eos.any(1), is_eos.argmax(1), T)
    label_ok = (pos <= first_eos[:, None]).astype(np.float32)

    # ------------------------------------------------------------------ 2. features
    feat_fn = jax.jit(lambda p, t: jnp.concatenate(qwen3.target_forward(p, tcfg, t, tuple(ids))[1], -1))
    fb = 32
    if feats is None:   # (chat answers come with theirs, from the generating pass)
        feats = np.zeros((len(seqs), T, len(ids) * tcfg["hidden_size"]), np.float32)
        for i in tqdm(range(0, len(seqs), fb), desc="features", dynamic_ncols=True):
            chunk = seqs[i:i + fb]
            if len(chunk) < fb:  # keep one compiled shape
                chunk = np.concatenate([chunk, np.zeros((fb - len(chunk), T), chunk.dtype)])
            feats[i:i + fb] = np.asarray(feat_fn(tparams, jnp.asarray(chunk)))[:min(fb, len(seqs) - i)]
    print(f"data: {len(seqs)} seqs x {T} tokens, features {feats.nbytes / 1e9:.2f} GB, {time.time() - t0:.0f}s", flush=True)

    # ------------------------------------------------------------------ 3. train
    w_k = np.exp(-np.arange(B - 1) / a.gamma).astype(np.float32)   # k = 1..B-1 -> exp(-(k-1)/gamma)
    opt, sched = qwen3.make_optimizer(a.lr, a.steps, a.warmup, a.weight_decay)

    def loss_fn(dp, f, t, anc, ok):
        logits = drafter_forward(dp, dcfg, embed, head, f, t, anc, mask_id, B)           # [N,A,B-1,V]
        lab_pos = anc[..., None] + 1 + jnp.arange(B - 1)                                  # [N,A,B-1]
        n = t.shape[0]
        labels = t[jnp.arange(n)[:, None, None], lab_pos]
        wt = ok[jnp.arange(n)[:, None, None], lab_pos] * w_k
        lp = jax.nn.log_softmax(logits, -1)
        nll = -jnp.take_along_axis(lp, labels[..., None], -1)[..., 0]
        acc = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        return (nll * wt).sum() / jnp.maximum(wt.sum(), 1e-6), (acc * (wt > 0)).sum(axis=(0, 1)) / jnp.maximum((wt > 0).sum(axis=(0, 1)), 1)

    @jax.jit
    def train_step(dp, s, f, t, anc, ok):
        (loss, acc), gr = jax.value_and_grad(loss_fn, has_aux=True)(dp, f, t, anc, ok)
        upd, s = opt.update(gr, s, dp)
        return optax.apply_updates(dp, upd), s, loss, acc

    ckpt = os.path.join(a.work, "checkpoint.pkl")
    if a.resume and os.path.exists(ckpt):
        st = qwen3.load_checkpoint(ckpt)
        same = lambda c: {k: v for k, v in c.items() if k != "torch_dtype"}   # the export dtype may change
        assert same(st["cfg"]) == same(dcfg), "checkpoint config differs"
        dp, opt_state, step0, elapsed, hist = st["params"], st["opt_state"], st["step"], st["elapsed"], st["hist"]
        dp, opt_state = jax.tree.map(jnp.asarray, dp), jax.tree.map(jnp.asarray, opt_state)
        print(f"resumed from step {step0}", flush=True)
    else:
        dp = jax.tree.map(jnp.asarray, init_drafter(dcfg, len(ids), a.seed))
        opt_state = opt.init(dp)
        step0, elapsed, hist = 0, 0.0, []
    n_params = qwen3.count_params(dp)
    print(f"drafter params: {n_params:,}, target_layer_ids {ids}, mask {mask_id}, B {B}, gamma {a.gamma}", flush=True)

    def sample_batch(step):
        r = np.random.default_rng(a.seed * 7919 + step)
        rows = r.choice(len(seqs), size=a.batch, replace=False)
        # anchors from the prompt's last token to the last one whose block still predicts the answer
        # (at most the first generated eos), so no block is all zero-weight labels
        lo = lambda i: max(1, plens[i] - 1)
        hi = lambda i: max(lo(i) + 1, min(T - B + 1, first_eos[i]))
        anc = np.stack([np.sort(r.integers(lo(i), hi(i), size=a.anchors)) for i in rows])
        return feats[rows].astype(np.float32), seqs[rows], anc.astype(np.int32), label_ok[rows]

    t_start = time.time() - elapsed
    bar = tqdm(range(step0, a.steps), initial=step0, total=a.steps, dynamic_ncols=True, mininterval=2)
    stopped_early, done = False, step0
    for step in bar:
        f, t, anc, ok = sample_batch(step)
        dp, opt_state, loss, acc = train_step(dp, opt_state, jnp.asarray(f), jnp.asarray(t), jnp.asarray(anc), jnp.asarray(ok))
        if step % 10 == 0 or step == a.steps - 1:
            acc = np.asarray(acc)
            hist.append((step, float(loss), float(acc[0]), float(acc[:4].mean())))
            bar.set_postfix(loss=f"{float(loss):.3f}", acc1=f"{acc[0]:.2f}", acc1_4=f"{acc[:4].mean():.2f}",
                            lr=f"{float(sched(step)):.1e}")
        done = step + 1
        over = a.max_minutes and (time.time() - t_start) > a.max_minutes * 60
        if done % a.ckpt_every == 0 or done == a.steps or over:
            qwen3.save_checkpoint(ckpt, {"cfg": dcfg, "params": dp, "opt_state": opt_state, "step": done,
                                         "elapsed": time.time() - t_start, "hist": hist})
        if over:
            stopped_early = True
            print(f"\n--max-minutes reached at step {done}; exporting", flush=True)
            break
    bar.close()
    train_wall = time.time() - t_start

    # ------------------------------------------------------------------ 4. simulated acceptance
    sim = None if a.no_simulate else simulate(a, tcfg, tparams, dcfg, dp, embed, head, tok, ids, mask_id, B, gen, feat_fn)
    if sim:
        print(f"simulated greedy tau (B={B}) on {sim['prompts']} held-out prompts: {sim['tau']:.3f}  "
              f"per-position acceptance {[round(x, 2) for x in sim['per_position_acceptance'][:6]]}...", flush=True)
        print(f"tau by run-time block size: {sim['tau_by_block_size']}", flush=True)

    os.makedirs(a.out, exist_ok=True)
    json.dump(dcfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    qwen3.save_safetensors(dp, os.path.join(a.out, "model.safetensors"), a.dtype)
    if tok is not None:   # a GGUF target's drafter reads the tokenizer from the target
        for fname in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(a.target, fname), os.path.join(a.out, fname))
    meta = {
        "stage": "drafter",
        "params": n_params,
        "target": os.path.relpath(os.path.abspath(a.target), REPO),
        "hyperparameters": {k: v for k, v in vars(a).items() if k not in ("out", "work", "target")},
        "label_recipe": "target-regenerated sequences (greedy continuation of train-split prompts); "
                        "labels for anchor t = sequence tokens t+1..t+B-1 = exact target greedy continuation",
        "target_layer_ids": ids, "mask_token_id": mask_id, "eos_token_id": eos_id, "block_size": B,
        "data_seconds": round(gen_seconds, 1),
        "train_wall_seconds": round(train_wall, 1),
        "total_wall_seconds": round(time.time() - t0, 1),
        "steps_done": done, "stopped_early": stopped_early,
        "final_train_loss": round(float(np.mean([h[1] for h in hist[-5:]])), 4) if hist else None,
        "first_logged_train_loss": hist[0][1] if hist else None,
        "final_train_acc_pos1": round(float(np.mean([h[2] for h in hist[-5:]])), 4) if hist else None,
        "loss_curve": [(s, round(l, 4), round(x1, 3)) for s, l, x1, _ in hist[::max(1, len(hist) // 50)]],
        "simulated_acceptance": sim,
    }
    json.dump(meta, open(os.path.join(a.out, "training.json"), "w"), indent=2)
    print(f"saved {a.out}", flush=True)


def regenerate_chat(a, tcfg, tparams, ids):
    """The target's greedy answers to encoded chat prompts, with the features of every position
    taken from the same pass. Resumable: each generation batch is saved to <work>/chat-regen/."""
    import numpy as np, jax, jax.numpy as jnp
    from tqdm import tqdm
    rows = [json.loads(l) for l in open(a.chat_prompts) if l.strip()][:a.num_seqs]
    T = a.seq_len
    gen = jax.jit(lambda p, prompt, plen: qwen3.target_generate(p, tcfg, prompt, plen, T, tuple(ids)))
    d = os.path.join(a.work, "chat-regen")
    os.makedirs(d, exist_ok=True)
    seqs, plens, feats = [], [], []
    for b in tqdm(range(0, len(rows), a.gen_batch), desc="answer", dynamic_ncols=True):
        f = os.path.join(d, f"batch-{b // a.gen_batch:04d}-{a.gen_batch}x{T}.npz")
        if not os.path.exists(f):
            chunk = rows[b:b + a.gen_batch]
            enc = [r["ids"][:T // 2] for r in chunk] + [[0]] * (a.gen_batch - len(chunk))   # one compiled shape
            buf = np.zeros((a.gen_batch, T), np.int32)
            for i, e in enumerate(enc):
                buf[i, :len(e)] = e
            plen = np.array([len(e) for e in enc], np.int32)
            t, h = gen(tparams, jnp.asarray(buf), jnp.asarray(plen))
            n = len(chunk)
            np.savez(f + ".tmp.npz", seqs=np.asarray(t)[:n], plens=plen[:n], feats=np.asarray(h)[:n].astype(np.float16))
            os.replace(f + ".tmp.npz", f)
        z = np.load(f)
        seqs.append(z["seqs"]); plens.append(z["plens"]); feats.append(z["feats"])
    return np.concatenate(seqs), np.concatenate(plens), np.concatenate(feats)


def simulate(a, tcfg, tparams, dcfg, dp, embed, head, tok, ids, mask_id, B, gen, feat_fn):
    """Greedy block verification walked over the target's own greedy output of each held-out
    prompt. Returns tau (mean accepted + 1 per block) and per-position acceptance, for block
    size B and (same drafter, truncated blocks) smaller run-time block sizes."""
    import numpy as np
    if not a.heldout:
        prompts = [json.loads(l)["prompt"] for l in open(a.prompts)]
        return simulate_set(a, tcfg, tparams, dcfg, dp, embed, head, [tok.encode(p).ids for p in prompts],
                            mask_id, B, gen, feat_fn)
    # chat targets: one result per held-out file (category), and all of them together from their counts
    sets = {}
    for path in a.heldout.split(","):
        rows = [json.loads(l) for l in open(path) if l.strip()]
        sets[rows[0].get("category", os.path.basename(path))] = [r["ids"] for r in rows]
    counts = {k: walk_blocks(a, tcfg, tparams, dcfg, dp, embed, head, v, mask_id, B, gen, feat_fn) for k, v in sets.items()}
    total = {bs: {f: sum(c[bs][f] for c in counts.values()) for f in ("accepted_tokens", "blocks", "accepted_at_position")}
             for bs in next(iter(counts.values()))}
    out = summarize(total, sum(len(v) for v in sets.values()), a.eval_len, B)
    out["by_category"] = {k: summarize(c, len(sets[k]), a.eval_len, B) for k, c in counts.items()}
    return out


def simulate_set(a, tcfg, tparams, dcfg, dp, embed, head, prompt_ids, mask_id, B, gen, feat_fn):
    return summarize(walk_blocks(a, tcfg, tparams, dcfg, dp, embed, head, prompt_ids, mask_id, B, gen, feat_fn),
                     len(prompt_ids), a.eval_len, B)


def summarize(counts, prompts, T, B):
    """tau (mean accepted + 1 per block) and per-position acceptance from walk_blocks' counts."""
    import numpy as np
    res = {bs: {"tau": c["accepted_tokens"] / c["blocks"] if c["blocks"] else 0.0,
                "per_position_acceptance": (np.asarray(c["accepted_at_position"]) / max(c["blocks"], 1)).round(4).tolist(),
                "blocks": c["blocks"]} for bs, c in counts.items()}
    return {"prompts": prompts, "generation_length": T, "block_size": B, **res[B],
            "tau_by_block_size": {str(k): round(v["tau"], 3) for k, v in res.items()},
            "note": "JAX f32 simulation of greedy block verification over the target's own greedy output"}


def walk_blocks(a, tcfg, tparams, dcfg, dp, embed, head, prompt_ids, mask_id, B, gen, feat_fn):
    """Per run-time block size bs (B and the smaller 8, 4): accepted tokens (accepted + 1 per block),
    blocks, and accepted drafts per block position, summed over the prompts."""
    import numpy as np, jax, jax.numpy as jnp
    T = a.eval_len
    enc = [list(e)[:T // 2] for e in prompt_ids]
    plen = np.array([len(e) for e in enc], np.int32)
    buf = np.zeros((len(enc), T), np.int32)
    for i, e in enumerate(enc):
        buf[i, :len(e)] = e
    seqs = np.asarray(gen(tparams, jnp.asarray(buf), jnp.asarray(plen)))
    feats = np.asarray(feat_fn(tparams, jnp.asarray(seqs)))
    pred_fn = jax.jit(lambda f, t, anc, bs: jnp.argmax(drafter_forward(dp, dcfg, embed, head, f, t, anc, mask_id, bs), -1),
                      static_argnums=3)
    eos = tcfg["eos_token_id"]
    counts = {}
    for bs in sorted({B, 8, 4}):
        if bs > B:
            continue
        tokens, pos_acc, n_blocks = 0, np.zeros(bs - 1, np.int64), 0
        # the block is really bs long (run-time block size), anchors 1 .. T-bs
        anchors = np.arange(1, T - bs + 1, dtype=np.int32)[None]
        for r in range(len(seqs)):
            pred = np.asarray(pred_fn(feats[r:r + 1], seqs[r:r + 1], anchors, bs))[0]  # [A, bs-1], row = anchor-1
            s = int(plen[r])        # first generated token (the prefill's bonus) is the first anchor
            gen_part = seqs[r, plen[r]:]
            stop = T if not (gen_part == eos).any() else int(plen[r] + np.argmax(gen_part == eos)) + 1
            while s + bs - 1 < stop:
                draft = pred[s - 1, :bs - 1]
                truth = seqs[r, s + 1:s + bs]
                m = int(np.cumprod(draft == truth).sum())
                tokens += m + 1
                pos_acc[:m] += 1
                n_blocks += 1
                s += m + 1
        counts[bs] = {"accepted_tokens": tokens, "blocks": n_blocks, "accepted_at_position": pos_acc}
    return counts


if __name__ == "__main__":
    main()
