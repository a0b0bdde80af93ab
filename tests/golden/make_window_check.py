"""Pin down Gemma 3's sliding-window boundary on the reference, for compare_llamacpp.py.

Run with the reference venv after make_forward_goldens.py:
    OMP_WAIT_POLICY=PASSIVE /work/venvs/ref/bin/python tests/golden/make_window_check.py
It prints which key positions transformers' mask lets a query see on a local layer, then
runs the long golden prompt (> 512 tokens) with the window set to 511, 512 and 513 and
saves the top-20 logits at positions around and past 512 to window_check_gemma3.json.
compare_llamacpp.py measures llama.cpp's distance to each variant: the boundary
llama.cpp uses is the closest one.
"""
import json
import pathlib
import sys

import torch
from transformers.masking_utils import sliding_window_causal_mask_function

from make_forward_goldens import HERE, full_logits, load_reference, top_k

WINDOWS = (511, 512, 513)


def visible_keys(window: int, query: int) -> tuple[int, int]:
    """First and last key position a query sees under transformers' sliding mask."""
    mask = sliding_window_causal_mask_function(window)
    zero, q = torch.tensor(0), torch.tensor(query)
    seen = [k for k in range(query + 1) if mask(zero, zero, q, torch.tensor(k))]
    return seen[0], seen[-1]


def main() -> int:
    torch.set_num_threads(2)
    first, last = visible_keys(512, 600)
    print(f"transformers, window 512: query 600 sees keys {first}..{last} "
          f"({last - first + 1} keys; sees j iff 600 - j < 512)")
    golden = json.loads((HERE / "forward_gemma3.json").read_text(encoding="utf-8"))
    prompt = max(golden["prompts"], key=lambda p: len(p["ids"]))
    ids = prompt["ids"]
    # Around 512 the variants differ in whether the query still sees position 0 (BOS,
    # where attention piles up), which moves the logits far more than one ordinary key.
    positions = [p for p in (510, 511, 512, 513, 514, 520, 600, len(ids) - 1) if p < len(ids)]
    model, _ = load_reference(pathlib.Path("/work/models"), golden["gguf_file"])
    variants = {}
    for window in WINDOWS:
        model.config.sliding_window = window  # the mask reads it from the config
        logits = full_logits(model, ids)
        tops = [top_k(logits[p]) for p in positions]
        variants[str(window)] = {"positions": positions, "top_ids": [t[0] for t in tops],
                                 "top_logits": [t[1] for t in tops]}
        print(f"window {window}: top-1 at {positions[-1]} = {tops[-1][0][0]}", flush=True)
    out = HERE / "window_check_gemma3.json"
    out.write_text(json.dumps({"prompt": prompt["name"], "ids": ids,
                               "visible_keys_query_600": [first, last],
                               "variants": variants}, separators=(",", ":")) + "\n",
                   encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
