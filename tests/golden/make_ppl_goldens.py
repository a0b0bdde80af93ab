"""Perplexity of tests/golden/ppl_text.txt under the float32 reference (transformers).

Run with the reference venv, from the repo root:
    OMP_WAIT_POLICY=PASSIVE /work/venvs/ref/bin/python tests/golden/make_ppl_goldens.py
Writes tests/golden/ppl_<model>.json: the text's tokens (with the model's add-BOS
setting, as llama-perplexity tokenizes), n_ctx, the windows' nll/count and the reference's
perplexity. compare_llamacpp.py adds llama.cpp's figure over the same windows. The
windowing (ppl.py) follows llama.cpp's perplexity tool; see NOTES.md.
"""
import argparse
import json
import pathlib
import sys

import torch

from make_forward_goldens import HERE, load_reference, reference_ids, reference_info
from ppl import perplexity, perplexity_windows, window_nll

N_CTX = 512


@torch.inference_mode()
def window_logits(model, window: list[int]):
    return model(input_ids=torch.tensor([window]), use_cache=False).logits[0].float().numpy()


def reference_perplexity(model_name: str, model, tokenizer, text: str, n_ctx: int) -> dict:
    tokens = reference_ids(model_name, tokenizer, text)
    add_bos = bool(tokenizer.add_bos_token) and tokens[0] == tokenizer.bos_token_id
    windows = perplexity_windows(tokens, n_ctx, tokenizer.bos_token_id if add_bos else None)
    per_window = []
    for window in windows:
        nll, count = window_nll(window_logits(model, window), window)
        per_window.append({"nll": round(nll, 6), "count": count})
        print(f"  window {len(per_window)}/{len(windows)}: ppl {perplexity(nll, count):.4f}",
              flush=True)
    nll_sum = sum(w["nll"] for w in per_window)
    count = sum(w["count"] for w in per_window)
    return {"tokens": tokens, "add_bos": add_bos, "n_ctx": n_ctx, "n_windows": len(windows),
            "n_scored": count, "reference": {"ppl": perplexity(nll_sum, count),
                                             "windows": per_window}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3"])
    parser.add_argument("--model-dir", type=pathlib.Path, default=pathlib.Path("/work/models"))
    parser.add_argument("--text", type=pathlib.Path, default=HERE / "ppl_text.txt")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    text = args.text.read_text(encoding="utf-8")
    for model_name in args.models:
        model, tokenizer = load_reference(args.model_dir, f"{model_name}.gguf")
        print(f"{model_name}:")
        result = {"model": model_name, "text_file": args.text.name,
                  **reference_perplexity(model_name, model, tokenizer, text, N_CTX)}
        result["reference"]["info"] = reference_info(model)
        out = HERE / f"ppl_{model_name}.json"
        out.write_text(json.dumps(result, separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"  ppl {result['reference']['ppl']:.4f} over {result['n_scored']} tokens "
              f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
