"""Loading z-lab's dflash/model.py (a path to a checkout, never fetched) and cropping its draft
cache the way its own decode loop does, across transformers 4 and 5. Shared by the scripts that
check dflash's drafters against z-lab's code (check_drafter_window.py, check_dflash2.py)."""
import importlib.util

import transformers


def load_zlab(path: str):
    spec = importlib.util.spec_from_file_location("zlab_dflash_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def crop_to(cache, length: int) -> None:
    """z-lab's past_key_values_draft.crop(start) with transformers 4.57.1 (keep `length` tokens);
    transformers 5 takes the number of tokens to remove, as a negative integer."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(length if transformers.__version__.startswith("4.") else -extra)
