"""Greedy continuations of `llm generate` (generate() with temperature 0, as the CLI runs
it) against the float reference's goldens (tests/golden/forward_<model>.json), by kind
of prompt (raw; chat = SmolLM2's template, turns = Gemma 3 turn markers written out),
beside llama.cpp's greedy ids saved in tests/golden/llamacpp_vs_reference.json and
scored by the same rules: the issue 5 closing note's match counts.

    python benchmarks/greedy_goldens.py [--model-dir /work/models] [--threads N]

Per kind: prompts equal to the reference up to its first near-tie (margin < 0.5, the
rule of tests/test_generate_real.py; and < 0.1), prompts equal for all 32 tokens, and
the median number of leading tokens equal.
"""
import argparse
import json
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from golden import metrics  # noqa: E402

from llmcli.generate import generate  # noqa: E402
from llmcli.model import load  # noqa: E402
from llmcli.sampling import make_sampler  # noqa: E402

GOLDEN_DIR = ROOT / "tests" / "golden"


def our_greedy(model, prompt, n):
    """n greedy tokens after the prompt, past end-of-generation tokens like the goldens."""
    chunks = generate(model, prompt["ids"], make_sampler(temperature=0), max_tokens=n,
                      ignore_eos=True)
    return [c.token for c in chunks]


def score(prompts, continuations):
    """{kind: counts} for these continuations (one list of ids per prompt)."""
    by_kind = {}
    for prompt, ids in zip(prompts, continuations):
        tally = by_kind.setdefault(prompt["kind"], {"n": 0, "ok_0.5": 0, "ok_0.1": 0,
                                                     "all_32": 0, "leading": []})
        ref, margins = prompt["greedy_ids"], prompt["greedy_margins"]
        tally["n"] += 1
        tally["ok_0.5"] += metrics.greedy_check(ids, ref, margins, 0.5).ok
        tally["ok_0.1"] += metrics.greedy_check(ids, ref, margins, 0.1).ok
        leading = metrics.greedy_check(ids, ref, margins).agree_len
        tally["all_32"] += leading == len(ref)
        tally["leading"].append(leading)
    return by_kind


def print_table(name, ours, theirs):
    print(f"{name}: kind, prompts | near-tie rule 0.5 | rule 0.1 | all 32 equal | "
          "median leading equal   (ours / llama.cpp)")
    for kind, t in ours.items():
        o = theirs[kind]
        print(f"  {kind:6s} {t['n']:3d} | {t['ok_0.5']:2d} / {o['ok_0.5']:2d} | "
              f"{t['ok_0.1']:2d} / {o['ok_0.1']:2d} | {t['all_32']:2d} / {o['all_32']:2d} | "
              f"{statistics.median(t['leading']):4.1f} / {statistics.median(o['leading']):4.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="/work/models")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    with open(GOLDEN_DIR / "llamacpp_vs_reference.json", encoding="utf-8") as f:
        llamacpp = json.load(f)["models"]
    for name in ("smollm2", "gemma3"):
        with open(GOLDEN_DIR / f"forward_{name}.json", encoding="utf-8") as f:
            golden = json.load(f)
        model = load(str(pathlib.Path(args.model_dir) / f"{name}.gguf"),
                     threads=args.threads)
        prompts = golden["prompts"]
        ours = [our_greedy(model, p, golden["n_greedy"]) for p in prompts]
        theirs_by_name = {p["name"]: p["greedy_ids"] for p in llamacpp[name]["prompts"]}
        theirs = [theirs_by_name[p["name"]] for p in prompts]
        print_table(name, score(prompts, ours), score(prompts, theirs))


if __name__ == "__main__":
    main()
