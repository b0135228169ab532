#!/usr/bin/env python3
"""transformers' own reading of the quantized checkpoints tools/quant/quantize.py writes: each is
loaded by transformers with compressed-tensors (the format's own decompression), and its greedy
continuation and log-probabilities are stored for test/47, which runs the same file through dflash.

    .venv-oracle/bin/python tools/quant/make_goldens.py   (needs torch, transformers, compressed-tensors)

Only the schemes transformers 5.25 + compressed-tensors 0.20 load on CPU: pack-quantized 4- and
8-bit and float-quantized fp8 (FP8 blocks need accelerate and a GPU kernel path, AWQ needs
gptqmodel, packed zero points are refused by transformers' shape check).
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parents[2]
CASES = [('qwen3-f32', 'int4-g32'), ('llama-f32', 'int8-g32'), ('qwen2-f32', 'fp8-channel')]
PROMPT = [3, 17, 42, 99, 5, 64, 7]
STEPS = 12


def main():
    transformers.logging.set_verbosity_error()
    out = {'reference': f'transformers {transformers.__version__}, compressed-tensors '
                        f'{__import__("compressed_tensors").__version__}, torch {torch.__version__}', 'prompt': PROMPT}
    with tempfile.TemporaryDirectory() as tmp:
        for model, scheme in CASES:
            q = pathlib.Path(tmp) / f'{model}-{scheme}'
            writer = ROOT / '.venv/bin/python'  # numpy + ml_dtypes (fp8)
            subprocess.run([str(writer if writer.exists() else sys.executable), str(ROOT / 'tools/quant/quantize.py'), str(ROOT / 'test/fixtures/models' / model), str(q),
                            '--scheme', scheme], check=True)
            m = AutoModelForCausalLM.from_pretrained(q, torch_dtype=torch.float32).eval()
            ids, logprobs, margins = list(PROMPT), [], []
            with torch.no_grad():
                for _ in range(STEPS):
                    logits = m(torch.tensor([ids])).logits[0, -1]
                    lp = torch.log_softmax(logits.double(), -1)
                    top = torch.topk(logits, 2)
                    nxt = int(top.indices[0])
                    logprobs.append(float(lp[nxt]))
                    margins.append(float(top.values[0] - top.values[1]))
                    ids.append(nxt)
            out[f'{model} {scheme}'] = {'ids': ids[len(PROMPT):], 'logprobs': logprobs, 'margins': margins}
    path = ROOT / 'test/fixtures/goldens/quantized-transformers.json'
    path.write_text(json.dumps(out, indent=1))
    print('wrote', path)


if __name__ == '__main__':
    main()
