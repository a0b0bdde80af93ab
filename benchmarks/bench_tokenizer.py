"""Tokenizer speed: llmcli against HF `tokenizers` (Rust), same text, same run.

    RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=. \\
        /work/venvs/ref/bin/python benchmarks/bench_tokenizer.py [--models DIR] [--mb 1]

Runs in the reference venv (it has transformers + tokenizers; llmcli comes from
PYTHONPATH, built in place for the same Python). HF's tokenizer is the one transformers
builds from the same GGUF file (for SmolLM2 with its own digit-splitting pre-tokenizer
restored, so both sides do the same work; the token counts printed must agree).
HF runs single-threaded: RAYON_NUM_THREADS=1, and one sequence per call anyway.

Text: ~1 MB of English prose, the docstrings of the Python standard library (real
sentences, some code; deterministic for a Python version). Measured two ways:
  whole      the text as one string (one encode call)
  paragraphs the text split at blank lines, one encode call per paragraph
Reported: MB/s (UTF-8 bytes) and tokens/s, best of --repeats runs, plus load times
(building the tokenizer from the file). With --pathological, also the inputs that make a
BPE go quadratic, 1 MiB each (one repeated char, one word of random letters, spaces,
digits), against the first 1 MiB of the prose. All times are CPU seconds of this process
(time.process_time): the machine may be shared, and both sides run on one thread.
"""
import argparse
import os
import pkgutil
import importlib
import inspect
import time
import warnings

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODELS = {"smollm2": "smollm2.gguf", "gemma3": "gemma3.gguf"}
STDLIB_MODULES = """
    os re json pathlib collections itertools functools argparse logging subprocess threading
    asyncio email http urllib xml unittest typing decimal datetime calendar statistics random
    string textwrap difflib csv sqlite3 zipfile tarfile shutil tempfile socket ssl inspect
    dataclasses enum contextlib abc io codecs locale gettext pickle copy heapq bisect
    concurrent multiprocessing importlib pydoc doctest pdb tkinter turtle lib2to3 ctypes
    optparse configparser smtplib imaplib ftplib poplib mailbox ipaddress fractions numbers
    operator shlex cmd code codeop timeit trace tracemalloc traceback warnings weakref types
    ast dis tokenize symtable pprint reprlib queue sched selectors signal hashlib hmac secrets
    base64 binascii quopri html mimetypes wsgiref xmlrpc zoneinfo graphlib plistlib netrc
    getopt glob fnmatch filecmp fileinput stat platform sysconfig zipapp runpy modulefinder
    pyclbr compileall py_compile pickletools copyreg shelve dbm gzip bz2 lzma array struct
    math cmath idlelib
""".split()


def stdlib_prose(n_bytes):
    """Docstrings of stdlib modules and their members, in a fixed order."""
    seen, parts, size = set(), [], 0
    warnings.simplefilter("ignore")
    for name in STDLIB_MODULES:
        for module in _modules_under(name):
            for obj in _members(module):
                doc = getattr(obj, "__doc__", None)
                if isinstance(doc, str) and len(doc) > 80 and doc not in seen:
                    seen.add(doc)
                    parts.append(inspect.cleandoc(doc))
                    size += len(parts[-1].encode()) + 2
                    if size >= n_bytes:
                        return "\n\n".join(parts)
    return "\n\n".join(parts)


def _members(module):
    """The module, its functions and classes, and the classes' own members."""
    yield module
    for obj in list(vars(module).values()):
        yield obj
        if inspect.isclass(obj) and getattr(obj, "__module__", None) == module.__name__:
            yield from list(vars(obj).values())


def _modules_under(name):
    try:
        package = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a module missing from this Python build
        return []
    modules = [package]
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
        if "test" in info.name or "__main__" in info.name:
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except Exception:  # noqa: BLE001
            continue
    return modules


def best_time(encode, inputs, repeats):
    best, n_tokens = float("inf"), 0
    for _ in range(repeats):
        start = time.process_time()
        n_tokens = sum(len(encode(text)) for text in inputs)
        best = min(best, time.process_time() - start)
    return best, n_tokens


def load_ours(path):
    from llmcli.tokenizer import Tokenizer

    start = time.process_time()
    tokenizer = Tokenizer.from_gguf(path)
    return tokenizer, time.process_time() - start


def load_hf(models_dir, gguf_file):
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    start = time.process_time()
    backend = AutoTokenizer.from_pretrained(models_dir, gguf_file=gguf_file).backend_tokenizer
    elapsed = time.process_time() - start
    if gguf_file.startswith("smollm2"):  # SmolLM2's own pre-tokenizer (digits apart)
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    backend.encode_special_tokens = True  # user text: like our parse_special=False
    return backend, elapsed


def pathological_texts(prose):
    import random

    size = 1 << 20
    rng = random.Random(1)
    return {
        "prose": prose[:size],
        "'a' x 1 MiB": "a" * size,
        "one 1 MiB word": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size)),
        "spaces": " " * size,
        "digits": "7" * size,
    }


def report_pathological(name, runners, texts, repeats):
    prose_seconds = {}
    for input_name, text in texts.items():
        cells = []
        for who, (encode, _) in runners.items():
            seconds, n_tokens = best_time(encode, [text], repeats)
            prose_seconds.setdefault(who, seconds)
            cells.append(f"{who} {seconds * 1000:8.1f} ms ({seconds / prose_seconds[who]:4.1f}x prose) "
                         f"{n_tokens:8d} tok")
        print(f"{name:8} {input_name:15} " + "  ".join(cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=os.environ.get("LLMCLI_TEST_MODEL_DIR", "/work/models"))
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=sorted(MODELS))
    parser.add_argument("--pathological", action="store_true",
                        help="also time 1 MiB inputs that would expose a quadratic BPE")
    args = parser.parse_args()

    text = stdlib_prose(int(args.mb * (1 << 20)))
    paragraphs = [p for p in text.split("\n\n") if p]
    n_bytes = len(text.encode())
    print(f"text: {n_bytes / 1e6:.2f} MB of stdlib docstrings, {len(paragraphs)} paragraphs; "
          f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}")
    print(f"{'model':8} {'tokenizer':10} {'input':10} {'tokens':>8} {'MB/s':>7} {'Mtok/s':>7} {'load s':>7}")
    for name, file in MODELS.items():
        if args.only and name != args.only:
            continue
        ours, ours_load = load_ours(os.path.join(args.models, file))
        hf, hf_load = load_hf(args.models, file)
        runners = {
            "llmcli": (lambda t: ours.encode(t, add_special=False), ours_load),
            "hf": (lambda t: hf.encode(t, add_special_tokens=False).ids, hf_load),
        }
        for input_name, inputs in (("whole", [text]), ("paragraphs", paragraphs)):
            for who, (encode, load) in runners.items():
                seconds, n_tokens = best_time(encode, inputs, args.repeats)
                print(f"{name:8} {who:10} {input_name:10} {n_tokens:8d} "
                      f"{n_bytes / seconds / 1e6:7.2f} {n_tokens / seconds / 1e6:7.3f} {load:7.2f}")
        if args.pathological:
            report_pathological(name, runners, pathological_texts(text), args.repeats)


if __name__ == "__main__":
    main()
