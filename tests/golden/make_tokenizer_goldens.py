"""Make the tokenizer goldens from two independent references, never from llmcli.

    /work/venvs/ref/bin/python tests/golden/make_tokenizer_goldens.py [--models DIR]
        [--lcpp-python /work/venvs/lcpp/bin/python] [--vocab-dir DIR]

References, both built from the same GGUF files we load:
  hf         transformers' AutoTokenizer.from_pretrained(DIR, gguf_file=NAME) (the Rust
             `tokenizers` pipeline transformers derives from the GGUF metadata);
  llama_cpp  llama-cpp-python's Llama(vocab_only=True).tokenize(...), run in its own venv.

Modes: "plain" = user text, special tokens NOT parsed (HF: encode_special_tokens=True;
llama.cpp: special=False); "special" = special tokens parsed (template text). No BOS/EOS.

Where the references disagree, llama_cpp is followed (see DECISIONS, written into the
goldens next to each disagreement), except where llama.cpp re-types a user-defined token
as a control token because of its name (USER_TOKEN_RENAMED): there HF is followed.

Also written: tests/golden/pretokenizer_goldens.json, the word splits of the corpus under
the gpt2 / smollm / llama3 / qwen2 rules by HF `tokenizers` pre-tokenizers configured as
those models' tokenizer.json files are; and, when --vocab-dir holds llama.cpp's test
vocabularies (ggml-vocab-{gpt-2,llama-bpe,qwen2}.gguf, shipped in llama.cpp's source
tree), llama.cpp's ids for the corpus under them.
"""
import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "tokenizer_corpus.json"
MODELS = {"smollm2": "smollm2.gguf", "gemma3": "gemma3.gguf"}
WITH_SPECIAL = 8  # texts also encoded with BOS/EOS added by the model's own rule
EXTRA_VOCABS = {"gpt-2": "ggml-vocab-gpt-2.gguf", "llama-bpe": "ggml-vocab-llama-bpe.gguf",
                "qwen2": "ggml-vocab-qwen2.gguf"}

DECISIONS = {
    "smollm2": (
        "llama.cpp implements SmolLM2's own pre-tokenizer (tokenizer.ggml.pre = smollm: every "
        "digit is a word of its own, then GPT-2's regex on the pieces between digits, as in "
        "SmolLM2's tokenizer.json: Digits(individual_digits) + ByteLevel). transformers' GGUF "
        "conversion knows no 'smollm' and uses plain ByteLevel, so whitespace before a digit "
        "splits differently ('a  1' -> 'a',' ',' 1' instead of 'a','  ','1'). We follow llama.cpp."),
    "gemma3": (
        "Gemma's whitespace runs (2 to 31 spaces, runs of tabs and newlines) are user-defined "
        "tokens. SentencePiece and llama.cpp match them as whole pieces before BPE, longest "
        "first (32 spaces -> 31 + 1); transformers' conversion prefers the 16-space token "
        "(32 spaces -> 16 + 16), a difference from SentencePiece noted in llama.cpp PR #8228. "
        "We follow llama.cpp."),
    "special": (
        "With parse_special on, both parse control tokens; differences are listed as found. "
        "We follow llama.cpp."),
}

# llama.cpp turns any token spelled like an end marker into a control end-of-generation
# token, whatever its type in the file (src/llama-vocab.cpp, "special_eog_ids"). Gemma 3's
# user-defined HTML tag '</s>' (id 212) is caught by the '</s>' entry added for PaddleOCR,
# so llama.cpp stops matching it in plain text; SentencePiece and HF match it always.
LLAMA_CPP_EOG_NAMES = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                       "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
                       "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
                       "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>"}
USER_TOKEN_RENAMED = (
    "The HF ids hold a user-defined token named like an end marker (Gemma 3: '</s>', id 212, "
    "an HTML strikethrough tag). llama.cpp re-types such tokens as control/end-of-generation "
    "by name (a heuristic for another model) and so no longer matches them in plain text; "
    "the file says user-defined, which SentencePiece and HF always match. We follow HF.")

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def load_texts():
    return json.loads(CORPUS.read_text())["texts"]


# ---- llama.cpp side: runs inside the llama-cpp-python venv ----

def llama_cpp_ids(path, texts):
    import llama_cpp

    model = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    result = {"plain": [], "special": [], "version": llama_cpp.__version__,
              # add_bos=True: llama.cpp adds BOS (and EOS) as the file's metadata says
              "add_special": [model.tokenize(t.encode(), add_bos=True, special=False)
                              for t in texts[:WITH_SPECIAL]]}
    for text in texts:
        data = text.encode("utf-8")
        result["plain"].append(model.tokenize(data, add_bos=False, special=False) if data else [])
        result["special"].append(model.tokenize(data, add_bos=False, special=True) if data else [])
    return result


def run_llama_cpp(lcpp_python, path):
    out = subprocess.run([lcpp_python, __file__, "--llama-cpp-worker", str(path)],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    return json.loads(out.stdout)


# ---- HF side ----

def hf_tokenizer(models_dir, name, gguf_file):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models_dir, gguf_file=gguf_file)
    return tokenizer.backend_tokenizer


def renamed_user_tokens(backend):
    """ids of user-defined (HF: added, not special) tokens llama.cpp re-types by name."""
    return {i for i, token in backend.get_added_tokens_decoder().items()
            if not token.special and token.content in LLAMA_CPP_EOG_NAMES}


def hf_ids(backend, texts):
    result = {}
    for mode, split_specials in (("plain", True), ("special", False)):
        backend.encode_special_tokens = split_specials
        result[mode] = [backend.encode(t, add_special_tokens=False).ids for t in texts]
    backend.encode_special_tokens = False
    return result


def smollm_pretokenizer():
    """SmolLM2's own pre-tokenizer (its tokenizer.json): digits apart, then ByteLevel."""
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


# ---- goldens ----

def model_goldens(name, hf, hf_raw, lcpp, texts, renamed_user_ids):
    """ids to match plus every text where the references disagree, with the one followed."""
    expected = {mode: list(lcpp[mode]) for mode in ("plain", "special")}
    disagreements = []
    for i in range(len(texts)):
        for mode in ("plain", "special"):
            if hf[mode][i] == lcpp[mode][i]:
                continue
            follow_hf = mode == "plain" and renamed_user_ids.intersection(hf[mode][i])
            # a special-mode difference on a text whose plain ids already differ has the
            # model's reason; only one new with parsing on gets the generic one
            special_only = mode == "special" and hf["plain"][i] == lcpp["plain"][i]
            why = USER_TOKEN_RENAMED if follow_hf else \
                DECISIONS["special"] if special_only else DECISIONS[name]
            if follow_hf:
                expected[mode][i] = hf[mode][i]
            disagreements.append({"text": i, "mode": mode, "hf": hf[mode][i],
                                  "llama_cpp": lcpp[mode][i],
                                  "followed": "hf" if follow_hf else "llama_cpp", "why": why})
    golden = {"plain": expected["plain"], "special": {}, "add_special": lcpp["add_special"],
              "disagreements": disagreements}
    for i in range(len(texts)):
        if expected["special"][i] != expected["plain"][i]:
            golden["special"][str(i)] = expected["special"][i]
    if hf_raw is not None:  # transformers' own conversion, before we restore the digit rule
        golden["hf_unpatched_plain_differs"] = [
            i for i in range(len(texts)) if hf_raw["plain"][i] != lcpp["plain"][i]]
    return golden


def pretokenizer_goldens(texts):
    """Word end offsets (in UTF-8 bytes) per text under each split rule, from HF tokenizers."""
    from tokenizers import Regex, pre_tokenizers

    rules = {
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        "smollm": smollm_pretokenizer(),
        "llama3": pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        "qwen2": pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
    }
    goldens = {}
    for rule, pre in rules.items():
        goldens[rule] = []
        for text in texts:
            ends = [end for _, (_, end) in pre.pre_tokenize_str(text)]
            goldens[rule].append([len(text[:end].encode("utf-8")) for end in ends])
    return goldens


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def dump(path, data):
    path.write_text(json.dumps(data, ensure_ascii=True, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=os.environ.get("LLMCLI_TEST_MODEL_DIR", "/work/models"))
    parser.add_argument("--lcpp-python", default="/work/venvs/lcpp/bin/python")
    parser.add_argument("--vocab-dir", default=os.environ.get("LLMCLI_TEST_VOCAB_DIR"))
    parser.add_argument("--llama-cpp-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    texts = load_texts()
    if args.llama_cpp_worker:
        json.dump(llama_cpp_ids(args.llama_cpp_worker, texts), sys.stdout)
        return

    import tokenizers
    import transformers

    goldens = {
        "corpus_sha256": sha256(CORPUS),
        "references": {"hf": f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}"},
        "modes": "plain: special tokens not parsed; special: parsed. No BOS/EOS.",
        "models": {},
    }
    for name, gguf_file in MODELS.items():
        path = pathlib.Path(args.models) / gguf_file
        lcpp = run_llama_cpp(args.lcpp_python, path)
        goldens["references"]["llama_cpp"] = f"llama-cpp-python {lcpp['version']} (vocab_only)"
        backend = hf_tokenizer(args.models, name, gguf_file)
        hf_raw = None
        if name == "smollm2":
            hf_raw = hf_ids(backend, texts)
            backend.pre_tokenizer = smollm_pretokenizer()
        hf = hf_ids(backend, texts)
        goldens["models"][name] = {"gguf_sha256": sha256(path),
                                   **model_goldens(name, hf, hf_raw, lcpp, texts,
                                                   renamed_user_tokens(backend))}
        n_dis = len(goldens["models"][name]["disagreements"])
        print(f"{name}: {len(texts)} texts, {n_dis} disagreements between hf and llama.cpp")
    dump(HERE / "tokenizer_goldens.json", goldens)

    splits = {"corpus_sha256": sha256(CORPUS),
              "reference": f"tokenizers {tokenizers.__version__} pre-tokenizers",
              "rules": pretokenizer_goldens(texts), "vocabs": {}}
    if args.vocab_dir:
        for name, file in EXTRA_VOCABS.items():
            path = pathlib.Path(args.vocab_dir) / file
            if path.exists():
                lcpp = run_llama_cpp(args.lcpp_python, path)
                splits["vocabs"][name] = {"gguf": file, "gguf_sha256": sha256(path),
                                          "plain": lcpp["plain"]}
    dump(HERE / "pretokenizer_goldens.json", splits)


if __name__ == "__main__":
    main()
