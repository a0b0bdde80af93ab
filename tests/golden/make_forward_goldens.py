"""Make the forward/generation goldens from the float32 reference (transformers + torch).

Run with the reference venv (torch 2.13 CPU, transformers, gguf), from the repo root:
    OMP_WAIT_POLICY=PASSIVE /work/venvs/ref/bin/python tests/golden/make_forward_goldens.py
(optionally `--models gemma3`, `--model-dir DIR`). It loads each GGUF with transformers,
which dequantizes every weight to float32 with gguf-py, and writes
tests/golden/forward_<model>.json; see NOTES.md for the schema and how to use it.

Per prompt the golden holds: the text (and chat messages), whether BOS was prepended and
special tokens parsed, the ids, at every prompt position the argmax and top-1/top-2
margin, at ~5 positions the top-20 (ids, logits) and the log-sum-exp, and 32 greedy
tokens with the margin at each step (EOS does not stop it).
"""
import argparse
import datetime
import hashlib
import json
import pathlib
import sys
import unicodedata

import gguf
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = pathlib.Path(__file__).resolve().parent
N_GREEDY = 32
TOP_K = 20
TIE_TOLERANCE = 1e-3  # cached and full-recompute logits may order an exact tie differently

LONG_TEXT = (HERE / "long_prompt.txt").read_text(encoding="utf-8")

# Raw (completion) prompts, used for both models. None contains a control-token
# look-alike (`<|im_start|>`, `<bos>`, `<start_of_turn>`...) nor one of Gemma's
# user-defined HTML tags, so the ids do not depend on special-token parsing.
RAW_PROMPTS = [
    ("capital", "The capital of France is"),
    ("story", "Once upon a time, in a small village by the sea, there lived an old fisherman who"),
    ("science", "The theory of general relativity, published by Albert Einstein in 1915, "
                "describes gravity as"),
    ("biology", "Photosynthesis is the process by which green plants"),
    ("question", "Q: What is the boiling point of water at sea level?\nA:"),
    ("python", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'
               "    if n < 2:\n        return n\n"),
    ("c_code", '#include <stdio.h>\n\nint main(void) {\n    for (int i = 0; i < 10; i++) {\n'
               '        printf("%d\\n", i);\n    }\n'),
    ("sql", "SELECT name, COUNT(*) AS total\nFROM orders\nWHERE created_at >= '2024-01-01'\n"
            "GROUP BY name\nORDER BY total DESC\n"),
    ("json", '{"name": "Alice", "age": 30, "skills": ["python", "rust"], "active": true, "id":'),
    ("fibonacci_numbers", "1, 1, 2, 3, 5, 8, 13, 21, 34, 55,"),
    ("arithmetic", "The year 2024 had 366 days; 12 * 34 = 408, and 3.14159 rounded to two "
                   "decimals is"),
    ("order", "Order #98765 shipped on 2023-11-05 at 14:30 for $1,249.99 (qty 17). "
              "The next order"),
    ("french", "La tour Eiffel a été construite pour l'Exposition universelle de 1889 et"),
    ("german", "Die Straße war nass, weil es die ganze Nacht geregnet hatte, und die Kinder"),
    ("spanish", "¿Dónde está la biblioteca? Está al lado del museo, cerca de"),
    ("chinese", "北京是中国的首都，也是一座历史悠久的城市。"),
    ("japanese", "東京の桜は春に咲き、多くの人々が花見を楽しみます。"),
    ("russian", "Москва — столица России, крупнейший город страны и"),
    ("mixed_scripts", "Hello — مرحبا — नमस्ते — Γειά σου — 안녕하세요. In every language,"),
    ("symbols", "I love pizza 🍕 and sushi 🍣! Temperature: 25°C ± 2°, π ≈ 3.14, "
                "naïve café résumé —"),
    ("whitespace", "Dear John,\n\nThank you for your letter.\n\n\nBest regards,\n  Mary\t(signed)\n"),
    ("markdown_list", "Shopping list:\n- eggs\n- milk (2 liters)\n- bread\n\nTo do:\n1."),
    ("url_email", "Contact us at support@example.com or visit "
                  "https://www.example.org/docs?page=2&lang=en for"),
    ("near_empty", "Hello"),
    ("long_pep257", LONG_TEXT),
]

# SmolLM2-Instruct chat prompts: rendered with the GGUF's own template (ChatML, which adds
# its default system message when none is given) with add_generation_prompt=True, then
# tokenized parsing special tokens: the golden of `llm generate` in chat mode.
CHAT_PROMPTS = [
    ("chat_sky", [{"role": "user", "content": "Why is the sky blue?"}]),
    ("chat_haiku", [{"role": "user", "content": "Write a haiku about autumn leaves."}]),
    ("chat_math", [{"role": "user", "content": "What is 15 + 27?"}]),
    ("chat_cooking", [{"role": "user", "content": "Give me three tips for learning to cook."}]),
    ("chat_python", [{"role": "user", "content":
                      "Write a Python function that checks whether a number is prime."}]),
    ("chat_system", [{"role": "system", "content": "You are a pirate. Answer like a pirate."},
                     {"role": "user", "content": "Where is the treasure?"}]),
    ("chat_multi_turn", [{"role": "user", "content": "Hi! My name is Sam."},
                         {"role": "assistant", "content": "Hello Sam! How can I help you today?"},
                         {"role": "user", "content": "What is my name?"}]),
]

# Gemma 3 270M is a base model with no chat template, but its vocabulary has the turn
# markers: these prompts exercise special-token parsing on it.
GEMMA_TURN_PROMPTS = [
    ("turns_capital", "<start_of_turn>user\nWhat is the capital of Italy?<end_of_turn>\n"
                      "<start_of_turn>model\n"),
    ("turns_count", "<start_of_turn>user\nCount from one to five.<end_of_turn>\n"
                    "<start_of_turn>model\n"),
]


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def control_token_ids(gguf_path: pathlib.Path) -> set[int]:
    """Ids of CONTROL tokens (type 3) in the GGUF vocabulary, read with gguf-py."""
    field = gguf.GGUFReader(gguf_path).fields["tokenizer.ggml.token_type"]
    types = np.array([field.parts[i][0] for i in field.data])
    return set(np.flatnonzero(types == 3).tolist())


def load_reference(model_dir: pathlib.Path, gguf_name: str):
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, gguf_file=gguf_name, dtype=torch.float32,
        # Eager attention: plain matmul + masked softmax in float32, the most literal math.
        attn_implementation="eager")
    model.eval()
    # transformers' generate() would stop at EOS; we never call it, but clear it anyway so
    # nothing downstream of this model object stops early.
    model.generation_config.eos_token_id = None
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_name)
    return model, tokenizer


def split_numbers(text: str) -> list[str]:
    """The first stage of SmolLM2's `smollm` pre-tokenizer (regex \\p{N}): every number
    character becomes a piece of its own, the text between stays whole."""
    pieces, current = [], ""
    for ch in text:
        if unicodedata.category(ch).startswith("N"):
            pieces += [current, ch] if current else [ch]
            current = ""
        else:
            current += ch
    return pieces + [current] if current else pieces


def reference_ids(model_name: str, tokenizer, text: str) -> list[int]:
    """The reference tokenizer's ids for text, BOS added per the model's setting.

    transformers does not know SmolLM2's `smollm` pre-tokenizer: it runs GPT-2's regex
    without first isolating digits, which changes the ids where whitespace precedes a
    digit (two newlines before "1." become two single-newline tokens instead of one
    double-newline token). So for SmolLM2 we split the numbers off first and tokenize
    each piece alone, as llama.cpp does. SmolLM2 adds no BOS, so nothing is lost by
    tokenizing pieces without special tokens.
    """
    if model_name != "smollm2":
        return tokenizer(text, add_special_tokens=True)["input_ids"]
    assert not tokenizer.add_bos_token
    return [i for piece in split_numbers(text)
            for i in tokenizer(piece, add_special_tokens=False)["input_ids"]]


def build_prompts(model_name: str, tokenizer, control_ids: set[int]) -> list[dict]:
    prompts = []
    for name, text in RAW_PROMPTS:
        ids = reference_ids(model_name, tokenizer, text)
        add_bos = ids[:1] == [tokenizer.bos_token_id] and tokenizer.add_bos_token
        body = ids[1:] if add_bos else ids
        # HF parses special-token strings even in raw text; make sure none was there.
        assert not control_ids.intersection(body), (name, ids)
        prompts.append({"name": name, "kind": "raw", "text": text, "add_bos": bool(add_bos),
                        "parse_special": False, "ids": ids})
    if model_name == "smollm2":
        for name, messages in CHAT_PROMPTS:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=False)
            ids = reference_ids(model_name, tokenizer, text)
            assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>"), (name, ids)
            prompts.append({"name": name, "kind": "chat", "messages": messages, "text": text,
                            "add_bos": False, "parse_special": True, "ids": ids})
    if model_name == "gemma3":
        for name, text in GEMMA_TURN_PROMPTS:
            ids = tokenizer(text, add_special_tokens=True)["input_ids"]
            assert ids[0] == tokenizer.bos_token_id and 105 in ids, (name, ids)
            prompts.append({"name": name, "kind": "turns", "text": text, "add_bos": True,
                            "parse_special": True, "ids": ids})
    return prompts


@torch.inference_mode()
def full_logits(model, ids: list[int]) -> np.ndarray:
    """Teacher-forced logits at every position, no KV cache: [len(ids), n_vocab]."""
    out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].float().numpy()


@torch.inference_mode()
def greedy_tokens(model, ids: list[int], n_steps: int) -> list[int]:
    """Greedy continuation with the KV cache (EOS does not stop it)."""
    out = model(input_ids=torch.tensor([ids]), use_cache=True)
    generated = []
    for _ in range(n_steps):
        next_id = int(out.logits[0, -1].argmax())
        generated.append(next_id)
        out = model(input_ids=torch.tensor([[next_id]]), past_key_values=out.past_key_values,
                    use_cache=True)
    return generated


def argmax_and_margin(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    top2 = np.partition(logits, -2, axis=-1)[:, -2:]
    return logits.argmax(axis=-1), top2[:, 1] - top2[:, 0]


def selected_positions(n: int) -> list[int]:
    """The last position and four spread over the prompt (deduplicated)."""
    return sorted({n * k // 5 for k in range(1, 5)} | {n - 1})


def top_k(row: np.ndarray, k: int = TOP_K) -> tuple[list[int], list[float]]:
    ids = np.argsort(-row, kind="stable")[:k]
    return ids.tolist(), [round(float(row[i]), 5) for i in ids]


def logsumexp(row: np.ndarray) -> float:
    row = row.astype(np.float64)
    top = row.max()
    return float(top + np.log(np.exp(row - top).sum()))


def golden_for_prompt(model, prompt: dict) -> dict:
    ids = prompt["ids"]
    n = len(ids)
    greedy = greedy_tokens(model, ids, N_GREEDY)
    # One pass over prompt + continuation: its first n rows are the prompt's logits
    # (attention is causal), the rest re-derive each greedy step without the cache.
    logits = full_logits(model, ids + greedy[:-1])
    argmax, margin = argmax_and_margin(logits)
    for step, token in enumerate(greedy):
        row = n - 1 + step
        if argmax[row] != token and margin[row] > TIE_TOLERANCE:
            raise RuntimeError(f"{prompt['name']}: cached greedy step {step} chose {token}, "
                               f"full recompute {argmax[row]} (margin {margin[row]:.4f})")
    positions = selected_positions(n)
    tops = [top_k(logits[p]) for p in positions]
    return {
        **prompt,
        "argmax": argmax[:n].tolist(),
        "margin": [round(float(m), 5) for m in margin[:n]],
        "top_positions": positions,
        "top_ids": [t[0] for t in tops],
        "top_logits": [t[1] for t in tops],
        "logsumexp": [round(logsumexp(logits[p]), 5) for p in positions],
        "greedy_ids": greedy,
        "greedy_margins": [round(float(m), 5) for m in margin[n - 1:n - 1 + N_GREEDY]],
    }


def reference_info(model) -> dict:
    return {
        "implementation": "transformers AutoModelForCausalLM.from_pretrained(gguf_file=...)",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf"),
        "dtype": str(model.dtype).removeprefix("torch."),
        "attn_implementation": model.config._attn_implementation,
        "date": datetime.date.today().isoformat(),
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


def make_goldens(model_dir: pathlib.Path, model_name: str) -> dict:
    gguf_path = model_dir / f"{model_name}.gguf"
    model, tokenizer = load_reference(model_dir, gguf_path.name)
    prompts = build_prompts(model_name, tokenizer, control_token_ids(gguf_path))
    goldens = []
    for prompt in prompts:
        goldens.append(golden_for_prompt(model, prompt))
        print(f"{model_name}: {prompt['name']:<18} {len(prompt['ids']):4d} tokens", flush=True)
    return {
        "model": model_name,
        "gguf_file": gguf_path.name,
        "gguf_sha256": sha256(gguf_path),
        "reference": reference_info(model),
        "bos_id": tokenizer.bos_token_id,
        "eos_id": tokenizer.eos_token_id,
        "n_vocab": model.config.vocab_size,
        "n_greedy": N_GREEDY,
        "prompts": goldens,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3"])
    parser.add_argument("--model-dir", type=pathlib.Path, default=pathlib.Path("/work/models"))
    parser.add_argument("--out-dir", type=pathlib.Path, default=HERE)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for model_name in args.models:
        golden = make_goldens(args.model_dir, model_name)
        out = args.out_dir / f"forward_{model_name}.json"
        out.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n",
                       encoding="utf-8")
        print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
