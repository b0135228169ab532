#!/usr/bin/env python3
"""Convert a Hugging Face Qwen3 / Qwen2 / Llama checkpoint directory to GGUF for llama.cpp.

Used by bench/peers.ts so llama.cpp runs exactly the weights dflash runs. The checkpoint
directory needs config.json, model.safetensors (or *.safetensors shards) and a byte-level BPE
tokenizer.json (GPT-2 style, as the shipped models/code-pair uses). Metadata, tensor names and
16-bit rounding come from the maintained `gguf` package; this file only maps the checkpoint.

    python tools/gguf/convert.py CHECKPOINT_DIR OUT.gguf
        [--dtype f32|f16|bf16|q8_0|q4_0|q4_1|q4_k|q5_k|q6_k|mixed] [--safetensors-out DIR]

--safetensors-out also writes a copy of the checkpoint whose weights carry the same rounding
(every tensor in --dtype), so an engine that takes the checkpoint's dtype as its weight dtype
runs bit-identical 16-bit weights to the GGUF's. For the block-quantized types the copy is f32:
gguf-py's dequantize() of exactly the bytes written (the oracle test/46-gguf checks dflash's
decoders against). --dtype mixed gives the 2-D weights every type in turn (a K-quant only where
a row is whole 256-value blocks), so one small file exercises them all.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import gguf
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

import kquants

ARCHES = {"qwen3": gguf.MODEL_ARCH.QWEN3, "qwen2": gguf.MODEL_ARCH.QWEN2, "llama": gguf.MODEL_ARCH.LLAMA}
Q = gguf.GGMLQuantizationType
QTYPES = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1,
          "q4_k": Q.Q4_K, "q5_k": Q.Q5_K, "q6_k": Q.Q6_K}
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
              "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
              "q4_k": gguf.LlamaFileType.MOSTLY_Q4_K_M, "q5_k": gguf.LlamaFileType.MOSTLY_Q5_K_M,
              "q6_k": gguf.LlamaFileType.MOSTLY_Q6_K, "mixed": gguf.LlamaFileType.GUESSED}
MIXED = ["q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k", "f16", "bf16"]


class ConvertError(Exception):
    pass


def read_config(ckpt: Path) -> dict:
    path = ckpt / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConvertError(f"cannot read {path}: {e}") from e
    model_type = cfg.get("model_type")
    if model_type not in ARCHES:
        raise ConvertError(f"{path}: model_type {model_type!r} is not supported (accepted: {', '.join(ARCHES)})")
    # llama3-style RoPE scaling needs a rope_freqs tensor; nothing in this project needs it yet.
    if cfg.get("rope_scaling"):
        raise ConvertError(f"{path}: rope_scaling {cfg['rope_scaling']!r} is not supported by this converter")
    return cfg


def read_tensors(ckpt: Path) -> dict[str, np.ndarray]:
    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise ConvertError(f"{ckpt}: no *.safetensors file")
    tensors: dict[str, np.ndarray] = {}
    for f in files:
        with safe_open(str(f), framework="numpy") as st:
            for name in st.keys():
                tensors[name] = st.get_tensor(name)
    bad = [n for n, t in tensors.items() if t.dtype not in (np.float32, np.float16)]
    if bad:
        raise ConvertError(f"{ckpt}: tensors {bad[:3]} are {tensors[bad[0]].dtype}; only f32/f16 checkpoints are read")
    return tensors


def permute_for_llama_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's "llama" arch rotates interleaved pairs (x0, x1), (x2, x3), ...; HF Llama
    rotates halves (x_i, x_{i+d/2}). Reordering the rows of q/k per head makes both agree.
    (Qwen3 uses the NEOX, half-rotation, convention in llama.cpp too, so it needs nothing.)"""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rounded(t: np.ndarray, dtype: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """The tensor as the GGUF stores it. 1-D tensors (norms, biases) stay f32, as llama.cpp's own
    converter keeps them; 2-D weights take the requested precision."""
    t = t.astype(np.float32)
    q = QTYPES[dtype] if t.ndim >= 2 else Q.F32
    if q in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        return kquants.quantize(t, dtype), q
    return gguf.quants.quantize(t, q), q


def mixed_dtype(t: np.ndarray, index: int) -> str:
    """--dtype mixed: the index-th type of MIXED that fits this tensor's rows."""
    for k in range(len(MIXED)):
        kind = MIXED[(index + k) % len(MIXED)]
        block = gguf.GGML_QUANT_SIZES[QTYPES[kind]][0]
        if t.shape[-1] % block == 0:
            return kind
    return "f32"


def add_tokenizer(w: gguf.GGUFWriter, ckpt: Path, n_vocab: int) -> None:
    try:
        vocab = gguf.vocab.BpeVocab(ckpt)
    except FileNotFoundError as e:
        raise ConvertError(f"{ckpt}: tokenizer.json must be a byte-level BPE (GPT-2 style) tokenizer: {e}") from e
    tokens, types = [], []
    for text, _score, ttype in vocab.all_tokens():
        tokens.append(text)
        types.append(ttype)
    tok = json.loads((ckpt / "tokenizer.json").read_text())
    # Special added tokens that also live in the base vocabulary (e.g. <|endoftext|> at id 0) are
    # control tokens for llama.cpp, so it never prints them as text.
    for added in tok.get("added_tokens", []):
        if added.get("special") and added["id"] < len(types):
            types[added["id"]] = gguf.TokenType.CONTROL
    if len(tokens) > n_vocab:
        raise ConvertError(f"{ckpt}: tokenizer has {len(tokens)} tokens but the embedding only {n_vocab} rows")
    for i in range(len(tokens), n_vocab):  # padded vocabularies: unused rows
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    w.add_tokenizer_model("gpt2")
    # HF's ByteLevel pre-tokenizer with use_regex is GPT-2's split pattern.
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(ckpt, load_merges=True, n_vocab=n_vocab)
    if not special.merges:
        # llama.cpp refuses a gpt2 vocabulary without merges, and GGUF cannot store an empty array.
        raise ConvertError(f"{ckpt / 'tokenizer.json'}: a BPE tokenizer without merges cannot be loaded by llama.cpp")
    special.add_to_gguf(w, quiet=True)


# DFlash drafters in llama.cpp's layout (upstream's DFlashModel converter; gguf-py 0.19 predates
# it, so the names are spelled here): fc, hidden_norm -> enc.output_norm, norm -> output_norm,
# the layers in Qwen3's names, no embedding or head (the target's are shared).
DRAFTER_NAMES = {"fc.weight": "fc.weight", "hidden_norm.weight": "enc.output_norm.weight", "norm.weight": "output_norm.weight"}


def convert(ckpt: Path, out: Path, dtype: str, safetensors_out: Path | None) -> None:
    cfg = read_config(ckpt)
    arch = ARCHES[cfg["model_type"]]
    tensors = read_tensors(ckpt)
    n_layers = int(cfg["num_hidden_layers"])
    n_head = int(cfg["num_attention_heads"])
    n_kv = int(cfg.get("num_key_value_heads") or n_head)
    hidden = int(cfg["hidden_size"])
    head_dim = int(cfg.get("head_dim") or hidden // n_head)
    drafter = (cfg.get("architectures") or [None])[0] == "DFlashDraftModel"
    if drafter:
        tensors = {k.removeprefix("model."): v for k, v in tensors.items()}
        n_vocab = int(cfg["vocab_size"])
        tied = True
    else:
        n_vocab = tensors["model.embed_tokens.weight"].shape[0]
        tied = bool(cfg.get("tie_word_embeddings", False)) or "lm_head.weight" not in tensors

    w = gguf.GGUFWriter(str(out), "dflash" if drafter else gguf.MODEL_ARCH_NAMES[arch])
    w.add_name(ckpt.resolve().name)
    w.add_context_length(int(cfg.get("max_position_embeddings", 2048)))
    w.add_embedding_length(hidden)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    # transformers 5 writes rope_theta inside rope_parameters; older configs at the top level.
    rope = cfg.get("rope_parameters") or {}
    w.add_rope_freq_base(float(cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_vocab_size(n_vocab)
    w.add_file_type(FILE_TYPES[dtype])
    if drafter:
        dc = cfg.get("dflash_config") or {}
        if "target_layer_ids" not in dc or "mask_token_id" not in dc:
            raise ConvertError(f"{ckpt / 'config.json'}: dflash_config needs target_layer_ids and mask_token_id")
        w.add_uint32("dflash.block_size", int(cfg.get("block_size", 16)))
        w.add_array("dflash.target_layers", [int(i) + 1 for i in dc["target_layer_ids"]])  # llama.cpp taps layer inputs
        w.add_uint32("tokenizer.ggml.mask_token_id", int(dc["mask_token_id"]))
    else:
        add_tokenizer(w, ckpt, n_vocab)

    names = gguf.get_tensor_name_map(arch, n_layers)
    copy: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed from rope_theta by every engine
        if name == "lm_head.weight" and tied:
            continue
        gname = DRAFTER_NAMES.get(name) if drafter else None
        gname = gname or names.get_name(("model." if drafter else "") + name, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise ConvertError(f"{ckpt}: tensor {name} has no GGUF name for arch {cfg['model_type']}")
        if arch == gguf.MODEL_ARCH.LLAMA and name.endswith(("q_proj.weight", "k_proj.weight")):
            data = permute_for_llama_rope(t, n_head if "q_proj" in name else n_kv)
        else:
            data = t
        kind = mixed_dtype(t, len(copy)) if dtype == "mixed" else dtype
        stored, qtype = rounded(data, kind)
        w.add_tensor(gname, stored, raw_dtype=qtype)  # the byte shape of bf16 / block data gives the element shape
        if safetensors_out is not None:
            if kind in ("f32", "f16", "bf16") and dtype != "mixed":
                copy[name] = rounded_copy(t, kind)
            else:
                # What the GGUF holds, decoded by gguf-py, in the checkpoint's own row order.
                # Rows are quantized independently, so the unpermuted tensor's blocks are the GGUF's
                # rows in the checkpoint's order; quantized once more only where rows were permuted.
                held, held_type = (stored, qtype) if data is t else rounded(t, kind)
                copy[name] = gguf.quants.dequantize(held, held_type).reshape(t.shape).astype(np.float32)
        else:
            copy[name] = np.empty(0)  # counts tensors for --dtype mixed
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if safetensors_out is not None:
        write_checkpoint_copy(ckpt, safetensors_out, copy, dtype if dtype in ("f16", "bf16") else "f32")


def rounded_copy(t: np.ndarray, dtype: str) -> np.ndarray:
    """The same rounding as the GGUF's 2-D weights, for every tensor of the checkpoint copy
    (an engine with one weight dtype would round the f32 norms itself otherwise)."""
    t = t.astype(np.float32)
    if dtype == "f32":
        return t
    if dtype == "f16":
        return gguf.quants.quantize(t, gguf.GGMLQuantizationType.F16)
    # bf16 bits as uint16; relabelled as BF16 in the safetensors header by write_checkpoint_copy.
    return gguf.quants.quantize(t, gguf.GGMLQuantizationType.BF16).view(np.uint16).reshape(t.shape)


def write_checkpoint_copy(ckpt: Path, out: Path, tensors: dict[str, np.ndarray], dtype: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for f in ckpt.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy2(f, out / f.name)
    target = out / "model.safetensors"
    save_file(tensors, str(target))
    if dtype == "bf16":
        relabel_u16_as_bf16(target)
    cfg = json.loads((out / "config.json").read_text())
    cfg["torch_dtype"] = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype]
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def relabel_u16_as_bf16(path: Path) -> None:
    """numpy has no bfloat16, so the copy was saved as U16 bits; only the header's dtype strings
    change (data offsets are relative to the end of the header, so they stay valid)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    for name, entry in header.items():
        if name != "__metadata__" and entry["dtype"] == "U16":
            entry["dtype"] = "BF16"
    enc = json.dumps(header, separators=(",", ":")).encode()
    enc += b" " * (-len(enc) % 8)  # the format pads the header to 8 bytes
    path.write_bytes(len(enc).to_bytes(8, "little") + enc + raw[8 + n:])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--dtype", choices=sorted(QTYPES) + ["mixed"], default="f32")
    p.add_argument("--safetensors-out", type=Path)
    a = p.parse_args(argv)
    try:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        convert(a.checkpoint, a.out, a.dtype, a.safetensors_out)
    except ConvertError as e:
        print(f"convert.py: {e}", file=sys.stderr)
        return 1
    print(f"wrote {a.out} ({a.dtype})" + (f" and {a.safetensors_out}" if a.safetensors_out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
