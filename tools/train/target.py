#!/usr/bin/env python3
"""Train a small Qwen3-architecture causal LM (the DFlash target) on the corpus, in JAX.

  python tools/train/target.py --out models/code-pair/target --steps 1500
  python tools/train/target.py --out /tmp/t --tiny            # < 1 min smoke test

Checkpoints go to --work (default <out>/../work-target, git-ignored) every --ckpt-every steps;
--resume continues from the latest one (same data order, same schedule). The result is saved in
the Hugging Face Qwen3 layout (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json) plus training.json (hyperparameters, wall time, losses).
"""
import argparse, json, os, shutil, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import qwen3  # noqa: E402


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default=None, help="checkpoint dir (default: <out>/../work-target)")
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "work", "tokenizer"),
                    help="dir with tokenizer.json (trained by tokenizer.py if missing)")
    ap.add_argument("--train-text", default=os.path.join(HERE, "data", "train.txt"))
    ap.add_argument("--heldout-text", default=os.path.join(HERE, "data", "heldout.txt"))
    ap.add_argument("--vocab-size", type=int, default=4096, help="only used when training the tokenizer")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=768)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--max-position", type=int, default=1024)
    ap.add_argument("--tie-embeddings", action="store_true")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="saved weight dtype")
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--eval-batches", type=int, default=16)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop early (and export) after this wall time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes for a < 1 minute smoke test")
    a = ap.parse_args()
    if a.tiny:
        a.steps, a.batch, a.seq_len, a.warmup = 60, 8, 64, 10
        a.hidden, a.layers, a.heads, a.kv_heads, a.head_dim, a.intermediate = 64, 2, 2, 1, 32, 128
        a.vocab_size, a.eval_batches, a.ckpt_every, a.max_position = 512, 4, 30, 256
        a.lr = 3e-3
        if a.tokenizer == os.path.join(HERE, "work", "tokenizer"):
            a.tokenizer = os.path.join(HERE, "work", "tiny", "tokenizer")
    if a.work is None:
        a.work = os.path.join(os.path.dirname(os.path.abspath(a.out)), "work-target")
    return a


def main():
    a = parse()
    qwen3.setup_threads(a.threads)
    import numpy as np
    import jax, jax.numpy as jnp, optax
    from tqdm import tqdm

    max_bytes = 400_000 if a.tiny else None
    tok_json = os.path.join(a.tokenizer, "tokenizer.json")
    if not os.path.exists(tok_json):
        import tokenizer as tk
        tk.train_tokenizer(a.train_text, a.vocab_size, a.tokenizer, max_bytes)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_json)
    V = tok.get_vocab_size()
    mask_id = tok.token_to_id("<|mask|>")
    assert mask_id == V - 1 and tok.token_to_id("<|endoftext|>") == 0

    os.makedirs(a.work, exist_ok=True)
    tag = "tiny" if a.tiny else f"v{V}"
    train_ids = qwen3.load_tokens(tok_json, a.train_text, os.path.join(a.work, f"train-{tag}.npy"), max_bytes)
    held_ids = qwen3.load_tokens(tok_json, a.heldout_text, os.path.join(a.work, f"heldout-{tag}.npy"),
                                 max_bytes and max_bytes // 4)
    print(f"tokens: train {len(train_ids):,}  held-out {len(held_ids):,}  vocab {V}", flush=True)

    cfg = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": None,
        "eos_token_id": 0,
        "pad_token_id": 0,
        "head_dim": a.head_dim,
        "hidden_act": "silu",
        "hidden_size": a.hidden,
        "initializer_range": 0.02,
        "intermediate_size": a.intermediate,
        "max_position_embeddings": a.max_position,
        "max_window_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_hidden_layers": a.layers,
        "num_key_value_heads": a.kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": a.rope_theta,
        "sliding_window": None,
        "tie_word_embeddings": bool(a.tie_embeddings),
        "torch_dtype": a.dtype,
        "transformers_version": "4.51.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": V,
    }

    opt, sched = qwen3.make_optimizer(a.lr, a.steps, a.warmup, a.weight_decay)
    ckpt = os.path.join(a.work, "checkpoint.pkl")
    if a.resume and os.path.exists(ckpt):
        st = qwen3.load_checkpoint(ckpt)
        assert st["cfg"] == cfg, "checkpoint config differs from the arguments"
        params, opt_state, step0, elapsed, hist = st["params"], st["opt_state"], st["step"], st["elapsed"], st["hist"]
        params = jax.tree.map(jnp.asarray, params)
        opt_state = jax.tree.map(jnp.asarray, opt_state)
        print(f"resumed from step {step0} ({elapsed:.0f}s so far)", flush=True)
    else:
        params = jax.tree.map(jnp.asarray, qwen3.init_target(cfg, a.seed))
        opt_state = opt.init(params)
        step0, elapsed, hist = 0, 0.0, []
    n_params = qwen3.count_params(params)
    print(f"params: {n_params:,} ({n_params * (4 if a.dtype == 'float32' else 2) / 1e6:.1f} MB as {a.dtype})", flush=True)

    T = a.seq_len

    def loss_fn(p, batch):
        logits, _ = qwen3.target_forward(p, cfg, batch[:, :-1])
        lp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(lp, batch[:, 1:, None], axis=-1)[..., 0]
        return nll.mean()

    @jax.jit
    def train_step(p, s, batch):
        loss, g = jax.value_and_grad(loss_fn)(p, batch)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    eval_loss = jax.jit(loss_fn)

    def batch_at(ids, rng, n):
        starts = rng.integers(0, len(ids) - T - 1, size=n)
        return np.stack([ids[s:s + T + 1] for s in starts])

    def evaluate(ids, n_batches, seed):
        rng = np.random.default_rng(seed)
        return float(np.mean([eval_loss(params, jnp.asarray(batch_at(ids, rng, a.batch))) for _ in range(n_batches)]))

    t_start = time.time() - elapsed
    bar = tqdm(range(step0, a.steps), initial=step0, total=a.steps, dynamic_ncols=True, mininterval=2)
    t_last, tok_since, stopped_early = time.time(), 0, False
    for step in bar:
        batch = jnp.asarray(batch_at(train_ids, np.random.default_rng(a.seed * 1_000_003 + step), a.batch))
        params, opt_state, loss = train_step(params, opt_state, batch)
        tok_since += a.batch * T
        if step % 10 == 0 or step == a.steps - 1:
            lv = float(loss)
            hist.append((step, lv))
            now = time.time()
            bar.set_postfix(loss=f"{lv:.3f}", lr=f"{float(sched(step)):.2e}", tok_s=f"{tok_since / max(now - t_last, 1e-9):.0f}")
            t_last, tok_since = now, 0
        done = step + 1
        over = a.max_minutes and (time.time() - t_start) > a.max_minutes * 60
        if done % a.ckpt_every == 0 or done == a.steps or over:
            qwen3.save_checkpoint(ckpt, {"cfg": cfg, "params": params, "opt_state": opt_state, "step": done,
                                         "elapsed": time.time() - t_start, "hist": hist})
        if over:
            stopped_early = True
            print(f"\n--max-minutes reached at step {done}; exporting", flush=True)
            break
    bar.close()
    wall = time.time() - t_start
    steps_done = done if a.steps > step0 else step0

    train_eval = evaluate(train_ids, a.eval_batches, 12345)
    held_eval = evaluate(held_ids, a.eval_batches, 54321)
    print(f"final: train loss {train_eval:.4f}  held-out loss {held_eval:.4f}  wall {wall:.0f}s", flush=True)

    os.makedirs(a.out, exist_ok=True)
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    qwen3.save_safetensors(params, os.path.join(a.out, "model.safetensors"), a.dtype)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(a.tokenizer, f), os.path.join(a.out, f))
    json.dump({"generation_config": True, "eos_token_id": 0, "pad_token_id": 0, "do_sample": False},
              open(os.path.join(a.out, "generation_config.json"), "w"), indent=2)
    early = [l for s, l in hist[:3]]
    meta = {
        "stage": "target",
        "params": n_params,
        "hyperparameters": {k: v for k, v in vars(a).items() if k not in ("out", "work")},
        "tokens_per_step": a.batch * T,
        "steps_done": steps_done,
        "tokens_seen": steps_done * a.batch * T,
        "stopped_early": stopped_early,
        "wall_seconds": round(wall, 1),
        "first_logged_train_loss": early[0] if early else None,
        "final_train_loss": round(train_eval, 4),
        "final_heldout_loss": round(held_eval, 4),
        "loss_curve": [(s, round(l, 4)) for s, l in hist[::max(1, len(hist) // 50)]],
        "eos_token_id": 0,
        "mask_token_id": mask_id,
        "corpus": json.load(open(os.path.join(os.path.dirname(a.train_text), "corpus.json")))
        if os.path.exists(os.path.join(os.path.dirname(a.train_text), "corpus.json")) else None,
    }
    json.dump(meta, open(os.path.join(a.out, "training.json"), "w"), indent=2)
    print(f"saved {a.out}", flush=True)


if __name__ == "__main__":
    main()
