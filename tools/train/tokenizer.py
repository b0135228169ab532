#!/usr/bin/env python3
"""Train a byte-level BPE tokenizer (HF `tokenizers`) on the train split.

Ids: 0 = <|endoftext|> (eos, document separator), 1..V-2 = bytes + merges,
V-1 = <|mask|> (the DFlash mask token; always the LAST id).
Writes tokenizer.json and tokenizer_config.json into --out.
"""
import argparse, json, os
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, AddedToken

HERE = os.path.dirname(os.path.abspath(__file__))
EOT, MASK = "<|endoftext|>", "<|mask|>"

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}{% if not loop.last %}\n{% endif %}{% endfor %}"
)


def train_tokenizer(text_path, vocab_size, out_dir, max_bytes=None):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # the mask token is appended afterwards as the last id
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = open(text_path, encoding="utf-8").read()
    if max_bytes:
        text = text[:max_bytes]
    docs = [d for d in text.split(EOT) if d]

    def batches():
        for i in range(0, len(docs), 64):
            yield docs[i:i + 64]
    tok.train_from_iterator(batches(), trainer=trainer, length=len(docs))
    n = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(MASK, special=True, normalized=False)])
    mask_id = tok.token_to_id(MASK)
    assert mask_id == n == tok.get_vocab_size() - 1, (mask_id, n)
    assert tok.token_to_id(EOT) == 0
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1024,
        "bos_token": None,
        "eos_token": EOT,
        "pad_token": EOT,
        "unk_token": None,
        "mask_token": MASK,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            "0": {"content": EOT, "special": True, "lstrip": False, "rstrip": False,
                  "normalized": False, "single_word": False},
            str(mask_id): {"content": MASK, "special": True, "lstrip": False, "rstrip": False,
                           "normalized": False, "single_word": False},
        },
    }
    json.dump(cfg, open(os.path.join(out_dir, "tokenizer_config.json"), "w"), indent=2)
    return tok, {"vocab_size": tok.get_vocab_size(), "eos_token_id": 0, "mask_token_id": mask_id}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train-text", default=os.path.join(HERE, "data", "train.txt"))
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--out", default=os.path.join(HERE, "work", "tokenizer"))
    ap.add_argument("--max-bytes", type=int, default=None, help="train on a prefix (for --tiny runs)")
    a = ap.parse_args()
    tok, info = train_tokenizer(a.train_text, a.vocab_size, a.out, a.max_bytes)
    s = "def foo(self, x):\n    return x + 1\n"
    ids = tok.encode(s).ids
    assert tok.decode(ids) == s
    print(json.dumps(info), f"example: {len(s)} chars -> {len(ids)} tokens")


if __name__ == "__main__":
    main()
