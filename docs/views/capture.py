"""Rewrite the plain-text captures in this folder from the real models.

    python docs/views/capture.py [MODEL_DIR]     (default /work/models)

Each view runs as the user would run it, at 100 columns, one thread, fixed seeds; output
to a file is plain text (Rich writes no colour codes there). `llm generate --step` needs a
terminal, so it runs on a pseudo-terminal fed a fixed series of answers; its colour codes
are stripped and the answers appear as the terminal echoed them.
"""
import os
import pty
import re
import select
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {**os.environ, "COLUMNS": "100", "LLMCLI_THREADS": "1",
       "PYTHONPATH": os.path.dirname(os.path.dirname(HERE))}
FRANCE = "The capital of France is"
SENTENCE = "The trophy didn't fit in the suitcase because it was too big"

VIEWS = {
    "probs": ["probs", FRANCE, "--temperature", "0.2,1.0,2.0"],
    "explain": ["explain", FRANCE, "--seed", "1"],
    "attention": ["attention", SENTENCE, "--token", "it"],
    "score": ["score", "The cat sat on the mat. Quantum zebra pancakes."],
    "show_probs": ["generate", FRANCE, "--show-probs", "3", "-n", "8", "--seed", "1", "-v"],
}
# --step sessions: (arguments, the answers typed at each prompt; "" is Enter).
STEP_SESSIONS = {
    "smollm2": (["What is the capital of France?", "-n", "6", "--seed", "1"],
                ["1", "", "", "", "", ""]),
    "gemma3": ([FRANCE, "-n", "5", "--seed", "1"], ["", "1", "", "", ""]),
}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STEP_PROMPT = b"q = stop: "


def llm(*args):
    return [sys.executable, "-m", "llmcli", *args]


def capture_view(name, args, model_path):
    with open(os.path.join(HERE, f"{name}.txt"), "wb") as out:
        subprocess.run(llm(*args, "-m", model_path), stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, env=ENV, check=True)


def read_pty(fd, until, timeout=120):
    data, end = b"", time.time() + timeout
    while until not in data and time.time() < end:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:   # the child closed the terminal
                break
            if not chunk:
                break
            data += chunk
    return data


def capture_step(name, args, answers, model_path):
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(sys.executable, llm("generate", *args, "-m", model_path, "--step"), ENV)
    session = b""
    for answer in answers:
        session += read_pty(fd, STEP_PROMPT)
        os.write(fd, answer.encode() + b"\n")
    session += read_pty(fd, b"__until the end__", timeout=30)
    os.waitpid(pid, 0)
    os.close(fd)
    text = ANSI.sub("", session.decode("utf-8", "replace")).replace("\r", "")
    with open(os.path.join(HERE, f"step_{name}.txt"), "w", encoding="utf-8") as out:
        out.write(f"$ llm generate {' '.join(repr(a) if ' ' in a else a for a in args)} "
                  f"-m {name} --step\n{text}")


def main(model_dir):
    for model in ("smollm2", "gemma3"):
        path = os.path.join(model_dir, f"{model}.gguf")
        for view, args in VIEWS.items():
            capture_view(f"{view}_{model}", args, path)
        capture_step(model, *STEP_SESSIONS[model], path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/models")
