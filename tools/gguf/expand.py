#!/usr/bin/env python3
"""Rewrite a GGUF file with every tensor expanded to F32 (gguf-py's dequantize()) and the same
metadata: llama.cpp then runs exactly the f32 weights dflash expands the quantized file to at
load, so the two engines can be compared token for token (test/46-gguf).

    python tools/gguf/expand.py IN.gguf OUT.gguf
"""
from __future__ import annotations

import sys

import gguf
import numpy as np


def expand(src: str, dst: str) -> None:
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for name, field in r.fields.items():
        # The writer adds the architecture itself; GGUF.* are the reader's view of the header.
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, field.contents(), vtype, sub_type=sub)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    for t in r.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, data.reshape([int(d) for d in reversed(t.shape)]), raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    expand(sys.argv[1], sys.argv[2])
    print(f"wrote {sys.argv[2]}")
