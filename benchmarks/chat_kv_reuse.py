"""What keeping the KV cache between turns saves in `llm chat`.

One fixed 10-turn conversation runs on one loaded model in two ways, by the same code
(llmcli.conversation):
  reuse     as `llm chat` does: each turn prefills only what the cache lacks
  no-reuse  the cache is forgotten before every turn, so the whole conversation is
            prefilled again each time (what a stateless chat loop does)
Sampling is greedy. The no-reuse run keeps the reuse run's replies in its conversation,
so both see the same prompts; whether its own replies came out the same is reported
(they can differ at near-ties: tokens evaluated one at a time in the cache versus in
one batch give slightly different logits). The two ways alternate for --repeats
rounds, so a noisy neighbour on the machine hurts both alike; the report gives each
way's median round.

    python benchmarks/chat_kv_reuse.py -m smollm2 --max-tokens 64 --threads 2 --repeats 3
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SYSTEM = "You are a helpful assistant. Answer in two or three sentences."
MESSAGES = [
    "Hi! What is a large language model?",
    "How does it choose the next word?",
    "What is a token, exactly?",
    "Why do models have a context window?",
    "What is the KV cache and why does it speed things up?",
    "Can you give me an analogy for attention?",
    "What does temperature change when sampling?",
    "Is a smaller model always faster?",
    "What is quantization?",
    "Summarize our conversation in one sentence.",
]


def run_conversation(model, reuse, max_tokens, history=None):
    """One pass over MESSAGES; per-turn stats and the replies. With `history` (the
    replies of another run), those replies stay in the conversation instead of this
    run's own, so both runs see the same prompts even where their replies differ."""
    from llmcli.conversation import Conversation
    from llmcli.sampling import make_sampler

    model.reset()
    conversation = Conversation(model, SYSTEM)
    turns = []
    start = time.perf_counter()
    for text in MESSAGES:
        if not reuse:
            conversation.cached_ids = []   # generate() then resets and prefills everything
        plan = conversation.plan(text, max_tokens)
        turn = conversation.start_turn(plan, make_sampler(temperature=0), max_tokens)
        for _ in turn:
            pass
        if history is not None:
            conversation.messages[-1]["content"] = history[len(turns)]
        s = turn.stats
        turns.append({"prompt_tokens": s.prompt_tokens, "prefill_tokens": s.prefill_tokens,
                      "prefill_seconds": s.prefill_seconds,
                      "first_token_seconds": s.first_token_seconds,
                      "generated_tokens": s.generated_tokens, "dropped_turns": plan.n_drop,
                      "reply": turn.text})
    return {"turns": turns, "wall_seconds": time.perf_counter() - start}


def summary(run):
    turns = run["turns"]
    return {"prefill_tokens": sum(t["prefill_tokens"] for t in turns),
            "prefill_seconds": sum(t["prefill_seconds"] for t in turns),
            "first_token_seconds": sum(t["first_token_seconds"] for t in turns),
            "wall_seconds": run["wall_seconds"]}


def median_run(runs):
    """The round whose total prefill time is the median."""
    ranked = sorted(runs, key=lambda r: summary(r)["prefill_seconds"])
    return ranked[len(ranked) // 2]


def report(best, n_ctx, model_name, threads):
    lines = [f"model {model_name}, context {n_ctx}, threads {threads or 'all'}, "
             f"{len(MESSAGES)} turns", "",
             "turn | prompt | reuse: prefilled  s      | no-reuse: prefilled  s      | reply",
             "-----|--------|--------------------------|-----------------------------|------"]
    for k, (a, b) in enumerate(zip(best["reuse"]["turns"], best["no-reuse"]["turns"])):
        lines.append(f"{k + 1:>4} | {a['prompt_tokens']:>6} | {a['prefill_tokens']:>16} "
                     f"{a['prefill_seconds']:>7.3f} | {b['prefill_tokens']:>19} "
                     f"{b['prefill_seconds']:>7.3f} | {a['generated_tokens']:>4} tokens")
    r, n = summary(best["reuse"]), summary(best["no-reuse"])
    lines += ["",
              f"total prefill: reuse {r['prefill_tokens']} tokens in "
              f"{r['prefill_seconds']:.2f} s; no-reuse {n['prefill_tokens']} tokens in {n['prefill_seconds']:.2f} s",
              f"saved: {n['prefill_tokens'] - r['prefill_tokens']} tokens "
              f"({1 - r['prefill_tokens'] / n['prefill_tokens']:.0%}), "
              f"{n['prefill_seconds'] - r['prefill_seconds']:.2f} s of prefill "
              f"({1 - r['prefill_seconds'] / n['prefill_seconds']:.0%}); time to first "
              f"token summed over turns {n['first_token_seconds']:.2f} s -> "
              f"{r['first_token_seconds']:.2f} s",
              f"wall time of the whole conversation: {n['wall_seconds']:.2f} s -> "
              f"{r['wall_seconds']:.2f} s"]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", default="smollm2")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--ctx-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="Also write every round's numbers here.")
    args = parser.parse_args()

    from llmcli.model import load

    model = load(args.model, n_ctx=args.ctx_size, threads=args.threads)
    runs = {"reuse": [], "no-reuse": []}
    for _ in range(args.repeats):
        reuse = run_conversation(model, True, args.max_tokens)
        replies = [t["reply"] for t in reuse["turns"]]
        runs["reuse"].append(reuse)
        runs["no-reuse"].append(run_conversation(model, False, args.max_tokens, replies))
    best = {mode: median_run(rounds) for mode, rounds in runs.items()}
    same = [a["reply"] == b["reply"] for a, b in zip(best["reuse"]["turns"],
                                                       best["no-reuse"]["turns"])]
    print(report(best, model.n_ctx, model.name, args.threads))
    print(f"same prompt, same reply in both ways: {sum(same)} of {len(same)} turns")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"model": model.name, "n_ctx": model.n_ctx, "threads": args.threads,
             "max_tokens": args.max_tokens, "rounds": runs,
             "median": {m: summary(r) for m, r in best.items()},
             "replies_identical": same}, indent=2))


if __name__ == "__main__":
    main()
