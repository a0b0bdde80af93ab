"""This forward's distance from the float32 reference, beside llama.cpp's, on the golden
prompts (tests/golden/forward_<model>.json and llamacpp_vs_reference.json): the table of
issue 4. Prints max |dlogit| over the saved top-20 logits, argmax agreement where the
reference's top-1/top-2 margin exceeds 0.1 and 0.5, and greedy continuations that match.

    python benchmarks/forward_accuracy.py [--model-dir DIR] [--models smollm2,gemma3]
"""
import argparse
import json
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's llmcli and test helpers
from golden import metrics  # noqa: E402

from llmcli.model import load  # noqa: E402


def measure(model_path, golden):
    n_ctx = max(len(p["ids"]) for p in golden["prompts"]) + golden["n_greedy"]
    model = load(model_path, n_ctx=n_ctx)
    diffs, agree = [], {0.1: [0, 0, []], 0.5: [0, 0, []]}
    greedy_ok = 0
    for prompt in golden["prompts"]:
        logits = model.logits(prompt["ids"])
        diffs.append(metrics.top20_max_abs_diff(logits[prompt["top_positions"]],
                                                prompt["top_ids"], prompt["top_logits"]))
        for margin, tally in agree.items():
            a = metrics.argmax_agreement(logits.argmax(-1), prompt["argmax"], prompt["margin"], margin)
            tally[0] += a.agree
            tally[1] += a.total
            tally[2] += [(prompt["name"], i) for i in a.mismatches]
        greedy = [int(np.argmax(logits[-1]))]
        while len(greedy) < golden["n_greedy"]:
            greedy.append(int(np.argmax(model.eval([greedy[-1]]))))
        greedy_ok += metrics.greedy_check(greedy, prompt["greedy_ids"], prompt["greedy_margins"]).ok
    diffs = np.concatenate(diffs)
    return {"max_abs_dlogit_selected": {"median": float(np.median(diffs)), "max": float(diffs.max())},
            "argmax_0.1": {"agree": agree[0.1][0], "total": agree[0.1][1], "mismatches": agree[0.1][2]},
            "argmax_0.5": {"agree": agree[0.5][0], "total": agree[0.5][1], "mismatches": agree[0.5][2]},
            "greedy_ok": greedy_ok, "n_prompts": len(golden["prompts"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default=os.environ.get("LLMCLI_TEST_MODEL_DIR", "/work/models"))
    parser.add_argument("--models", default="smollm2,gemma3")
    args = parser.parse_args()
    golden_dir = ROOT / "tests" / "golden"
    llamacpp = json.loads((golden_dir / "llamacpp_vs_reference.json").read_text())["models"]
    for name in args.models.split(","):
        golden = json.loads((golden_dir / f"forward_{name}.json").read_text())
        ours = measure(os.path.join(args.model_dir, f"{name}.gguf"), golden)
        theirs = llamacpp[name]["summary"]
        print(f"== {name}: {ours['n_prompts']} prompts        llmcli        llama.cpp")
        for key in ("median", "max"):
            print(f"max|dlogit| top-20, {key:6}   {ours['max_abs_dlogit_selected'][key]:8.3f}"
                  f"     {theirs['max_abs_dlogit_selected'][key]:8.3f}")
        for m in ("0.1", "0.5"):
            o, t = ours[f"argmax_{m}"], theirs[f"argmax_{m}"]
            print(f"argmax agree, margin>{m}    {o['agree']}/{o['total']} ({o['agree'] / o['total']:.1%})"
                  f"   {t['agree']}/{t['total']} ({t['rate']:.1%})")
        print(f"greedy OK (to margin<0.1)    {ours['greedy_ok']:8d}     {theirs['greedy_ok']:8d}")
        print(f"flips above margin 0.5: {ours['argmax_0.5']['mismatches']}")


if __name__ == "__main__":
    main()
