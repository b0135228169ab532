# The reference safetensors reader (huggingface/safetensors, in ./.venv-train) on a list of files,
# for the differential fuzz test (test/26-hardening-fuzz): one JSON line per file, either
# {"ok": true, "tensors": {name: [dtype, shape, sha256 of its bytes]}} or {"ok": false, "error": ...}.
#
#   python safetensors_reference.py <list.json>
import hashlib
import json
import sys

import safetensors

for path in json.load(open(sys.argv[1])):
    try:
        with open(path, "rb") as f:
            content = safetensors.deserialize(f.read())
        tensors = {name: [t["dtype"].upper(), list(t["shape"]), hashlib.sha256(t["data"]).hexdigest()] for name, t in content}
        print(json.dumps({"ok": True, "tensors": tensors}))
    except Exception as e:  # every rejection, whatever its class, is an answer here
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
