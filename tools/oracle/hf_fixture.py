"""What the scripts that have transformers write a fixture share: save_pretrained into
test/fixtures/models/<name>, with the byte-level tokenizer of qwen3-f32 (vocabulary 256)."""
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "test" / "fixtures" / "models"
TOKENIZER_FROM = MODELS / "qwen3-f32"


def save_fixture(model, name: str) -> None:
    out = MODELS / name
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_FROM / f, out / f)
    print(f"{name}: written to {out}")
