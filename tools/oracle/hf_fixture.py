"""What the scripts that have transformers write a fixture share: drawing every parameter
(seeded; transformers' init leaves biases, sinks and routers at zero, which would test nothing),
and save_pretrained into test/fixtures/models/<name> with the byte-level tokenizer of qwen3-f32
(vocabulary 256)."""
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "test" / "fixtures" / "models"
TOKENIZER_FROM = MODELS / "qwen3-f32"


def draw_weights(model, seed: int, rule) -> None:
    """Every parameter, in name order, as mean + std * N(0, 1) with (mean, std) = rule(name)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            mean, std = rule(name)
            p.copy_(mean + std * torch.randn(p.shape, generator=gen))


def save_fixture(model, name: str) -> None:
    out = MODELS / name
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_FROM / f, out / f)
    print(f"{name}: written to {out}")
