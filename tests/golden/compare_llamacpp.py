"""How far llama.cpp is from the float32 reference: the bar our forward must meet or beat.

Run with the llama-cpp-python venv, from the repo root, after make_forward_goldens.py and
make_ppl_goldens.py:
    OMP_WAIT_POLICY=PASSIVE /work/venvs/lcpp/bin/python tests/golden/compare_llamacpp.py
It feeds each golden prompt's ids to llama.cpp (all logits, 2 threads), computes the
metrics of metrics.py against the goldens, checks that llama.cpp tokenizes every prompt
text to the golden ids, runs llama.cpp's own greedy continuation, and evaluates the
perplexity windows of ppl_<model>.json. Writes tests/golden/llamacpp_vs_reference.json,
adds a "llamacpp" entry to each ppl_<model>.json, and prints a table per model.
"""
import argparse
import datetime
import json
import pathlib
import sys

import llama_cpp
import numpy as np
from llama_cpp import Llama

from metrics import compare_prompt, summary, top20_max_abs_diff
from ppl import perplexity, perplexity_windows, window_nll

HERE = pathlib.Path(__file__).resolve().parent


GGML_TYPE_F32 = 0


def open_llama(path: pathlib.Path, n_ctx: int, threads: int, f32_kv: bool = False) -> Llama:
    kv_type = {"type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32} if f32_kv else {}
    return Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=threads,
                 n_threads_batch=threads, logits_all=True, verbose=False, **kv_type)


def teacher_forced_logits(llm: Llama, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits at every position of ids, from an empty cache: [n, n_vocab]."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32)


def greedy_continuation(llm: Llama, ids: list[int], n_steps: int) -> list[int]:
    """llama.cpp's own greedy tokens after ids (EOS does not stop it)."""
    llm.reset()
    llm.eval(ids)
    generated = []
    for _ in range(n_steps):
        next_id = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        generated.append(next_id)
        llm.eval([next_id])
    return generated


def tokenization_matches(llm: Llama, prompt: dict) -> bool:
    """Does llama.cpp tokenize the prompt text to the reference's ids?"""
    ids = llm.tokenize(prompt["text"].encode("utf-8"), add_bos=True,
                       special=prompt["parse_special"])
    return ids == prompt["ids"]


def compare_model(llm: Llama, golden: dict) -> dict:
    rows = []
    for prompt in golden["prompts"]:
        logits = teacher_forced_logits(llm, prompt["ids"])
        greedy = greedy_continuation(llm, prompt["ids"], golden["n_greedy"])
        m = compare_prompt(prompt, logits, greedy)
        rows.append({
            "name": prompt["name"], "n_tokens": len(prompt["ids"]),
            "tokenization_matches": tokenization_matches(llm, prompt),
            "max_abs_dlogit": m["max_abs_dlogit"],
            "max_abs_dlogit_last": m["max_abs_dlogit_last"],
            "argmax_0.1": m["argmax_0.1"]._asdict(), "argmax_0.5": m["argmax_0.5"]._asdict(),
            "greedy": m["greedy"]._asdict(), "greedy_ids": greedy,
            "greedy_divergence_margin": divergence_margin(prompt, m["greedy"].agree_len),
        })
        print(f"  {prompt['name']:<18} {len(prompt['ids']):4d} tok  "
              f"max|dlogit| {m['max_abs_dlogit']:.3f}  greedy {m['greedy'].agree_len:2d}/"
              f"{m['greedy'].required_len:2d}", flush=True)
    return {"prompts": rows, "summary": summarize(rows)}


def divergence_margin(prompt: dict, agree_len: int):
    """The reference's margin at the step where a continuation first left it (None if never)."""
    margins = prompt["greedy_margins"]
    return margins[agree_len] if agree_len < len(margins) else None


def summarize(rows: list[dict]) -> dict:
    def rate(key):
        agree = sum(r[key]["agree"] for r in rows)
        total = sum(r[key]["total"] for r in rows)
        return {"agree": agree, "total": total, "rate": agree / total if total else 1.0}

    agree_lens = [r["greedy"]["agree_len"] for r in rows]
    return {
        "max_abs_dlogit_last": summary([r["max_abs_dlogit_last"] for r in rows]),
        "max_abs_dlogit_selected": summary([r["max_abs_dlogit"] for r in rows]),
        "argmax_0.1": rate("argmax_0.1"),
        "argmax_0.5": rate("argmax_0.5"),
        "greedy_agree_len": {"median": float(np.median(agree_lens)), "min": min(agree_lens),
                             "full_32": sum(n == 32 for n in agree_lens)},
        "greedy_ok": sum(r["greedy"]["ok"] for r in rows),
        # the near-tie threshold under which every llama.cpp divergence would be excused
        "greedy_max_divergence_margin": max(
            (r["greedy_divergence_margin"] for r in rows
             if r["greedy_divergence_margin"] is not None), default=0.0),
        "n_prompts": len(rows),
        "tokenization_mismatches": [r["name"] for r in rows if not r["tokenization_matches"]],
    }


def llamacpp_perplexity(llm: Llama, ppl_golden: dict) -> dict:
    bos = ppl_golden["tokens"][0] if ppl_golden["add_bos"] else None
    windows = perplexity_windows(ppl_golden["tokens"], ppl_golden["n_ctx"], bos)
    per_window = []
    for window in windows:
        nll, count = window_nll(teacher_forced_logits(llm, window), window)
        per_window.append({"nll": round(nll, 6), "count": count})
    nll_sum = sum(w["nll"] for w in per_window)
    count = sum(w["count"] for w in per_window)
    return {"ppl": perplexity(nll_sum, count), "windows": per_window}


def window_check(llm: Llama, path: pathlib.Path) -> dict:
    """llama.cpp's distance to the reference run with sliding windows 511/512/513."""
    check = json.loads(path.read_text(encoding="utf-8"))
    logits = teacher_forced_logits(llm, check["ids"])
    out = {}
    for window, ref in check["variants"].items():
        diffs = top20_max_abs_diff(logits[ref["positions"]], ref["top_ids"], ref["top_logits"])
        out[window] = {**summary(diffs), "positions": ref["positions"],
                       "max_abs_dlogit": [round(float(d), 4) for d in diffs]}
    return out


def print_table(title: str, results: dict) -> None:
    print(f"\n{title} vs the float32 reference (transformers). max|dlogit|: max over the "
          "reference's top-20 at each prompt's last position (median, max over prompts);\n"
          "argmax: agreement where the reference margin > 0.1 / 0.5; greedy: leading tokens "
          "equal to the reference's 32, prompts passing the near-tie rule (margin < 0.1),\n"
          "and the largest reference margin at which llama.cpp's continuation left it")
    print(f"{'model':<8} {'dlogit med':>10} {'max':>6} {'argmax>0.1':>11} {'argmax>0.5':>11} "
          f"{'greedy med':>10} {'min':>4} {'rule ok':>8} {'div. margin':>11}")
    for name, res in results.items():
        s = res["summary"]
        print(f"{name:<8} {s['max_abs_dlogit_last']['median']:10.3f} "
              f"{s['max_abs_dlogit_last']['max']:6.3f} "
              f"{100 * s['argmax_0.1']['rate']:10.2f}% {100 * s['argmax_0.5']['rate']:10.2f}% "
              f"{s['greedy_agree_len']['median']:10.1f} {s['greedy_agree_len']['min']:4d} "
              f"{s['greedy_ok']:>5}/{s['n_prompts']:<2} {s['greedy_max_divergence_margin']:11.3f}")
        if "window_check" in res:
            print(f"{'':8} sliding-window check, max|dlogit| vs the reference run with window:")
            for window, v in res["window_check"].items():
                figures = " ".join(f"{p}:{d:.3f}" for p, d in zip(v["positions"],
                                                                  v["max_abs_dlogit"]))
                print(f"{'':10} {window}: {figures}")
        if "perplexity" in res:
            p = res["perplexity"]
            change = 100 * (p["llamacpp"] / p["reference"] - 1)
            print(f"{'':8} perplexity (n_ctx 512): reference {p['reference']:.4f}, "
                  f"llama.cpp {p['llamacpp']:.4f} ({change:+.2f}%)")


def run_model(path: pathlib.Path, golden: dict, threads: int, f32: bool) -> dict:
    """All comparisons for one model file; the perplexity only for the real (quantized) file."""
    model_name = golden["model"]
    n_ctx = max(len(p["ids"]) for p in golden["prompts"]) + golden["n_greedy"] + 64
    llm = open_llama(path, max(n_ctx, 1024), threads, f32_kv=f32)
    print(f"{model_name}{' (F32 weights, F32 KV)' if f32 else ''}:")
    result = compare_model(llm, golden)
    window_file = HERE / f"window_check_{model_name}.json"
    if window_file.exists():
        result["window_check"] = window_check(llm, window_file)
    ppl_file = HERE / f"ppl_{model_name}.json"
    if ppl_file.exists() and not f32:
        ppl_golden = json.loads(ppl_file.read_text(encoding="utf-8"))
        ppl_golden["llamacpp"] = llamacpp_perplexity(llm, ppl_golden)
        ppl_file.write_text(json.dumps(ppl_golden, separators=(",", ":")) + "\n",
                            encoding="utf-8")
        result["perplexity"] = {"reference": ppl_golden["reference"]["ppl"],
                                "llamacpp": ppl_golden["llamacpp"]["ppl"]}
    llm.close()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3"])
    parser.add_argument("--model-dir", type=pathlib.Path, default=pathlib.Path("/work/models"))
    parser.add_argument("--f32-dir", type=pathlib.Path, default=None,
                        help="also run <model>_f32.gguf from here (dequantize_gguf.py) "
                             "with an F32 KV cache")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    results, f32_results = {}, {}
    for model_name in args.models:
        golden = json.loads((HERE / f"forward_{model_name}.json").read_text(encoding="utf-8"))
        results[model_name] = run_model(args.model_dir / golden["gguf_file"], golden,
                                        args.threads, f32=False)
        if args.f32_dir:
            f32_results[model_name] = run_model(args.f32_dir / f"{model_name}_f32.gguf",
                                                golden, args.threads, f32=True)
    report = {"llama_cpp_python": llama_cpp.__version__, "threads": args.threads,
              "date": datetime.date.today().isoformat(),
              "system_info": llama_cpp.llama_print_system_info().decode().strip(),
              "models": results, "f32_weights_f32_kv": f32_results}
    out = HERE / "llamacpp_vs_reference.json"
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print_table("llama.cpp (real quantized GGUF, f16 KV)", results)
    if f32_results:
        print_table("llama.cpp on the same weights dequantized to F32, F32 KV", f32_results)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
