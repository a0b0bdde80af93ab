"""`llm inspect [MODEL]`: what is inside a GGUF file — architecture, hyperparameters,
tokenizer, special tokens, chat template, tensor table — as text or JSON.

`describe()` gathers everything into one plain dict (the JSON output); the text output
renders that dict. Every string that comes from the file is untrusted: on a terminal it
goes through escape_control, and Rich cells are Text objects so `[...]` in a token
string is never read as Rich markup.
"""
import json
from collections import Counter

import click

from llmcli.commands._common import escape_control, model_option, resolve_model, terminal_safe

# Architectures the engine can run (llmcli.config holds the per-architecture details).
SUPPORTED_ARCHITECTURES = ("llama", "gemma3")

# (JSON field, key under `{arch}.`, label)
HYPERPARAMETERS = [
    ("n_layers", "block_count", "layers"),
    ("n_embd", "embedding_length", "width"),
    ("n_heads", "attention.head_count", "attention heads"),
    ("n_kv_heads", "attention.head_count_kv", "KV heads"),
    ("head_dim", "attention.key_length", "head dim"),
    ("n_ff", "feed_forward_length", "FFN width"),
    ("n_vocab", "vocab_size", "vocabulary"),
    ("n_ctx_train", "context_length", "context length"),
    ("rope_freq_base", "rope.freq_base", "RoPE base"),
    ("rope_dim", "rope.dimension_count", "RoPE dims"),
    ("norm_eps", "attention.layer_norm_rms_epsilon", "RMSNorm eps"),
    ("sliding_window", "attention.sliding_window", "sliding window"),
]

TOKENIZER_KINDS = {
    "gpt2": "byte-level BPE (GPT-2 style)",
    "llama": "SentencePiece-style BPE with byte fallback",
    "bert": "WordPiece",
    "t5": "SentencePiece Unigram",
    "rwkv": "RWKV greedy",
    "none": "no tokenizer",
}

# llama.cpp's llama_ftype numbers, stored in general.file_type ("mostly" this type).
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
}


@click.command()
@click.argument("model_arg", metavar="[MODEL]", required=False)
@model_option
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.option("--tensors", "show_tensors", is_flag=True, help="List every tensor.")
@click.option("--template", "show_template", is_flag=True, help="Print the chat template.")
@click.pass_context
def inspect(ctx, model_arg, model, output_format, show_tensors, show_template):
    """Show a model's architecture, hyperparameters, tokenizer and tensors.

    MODEL is a registry name (see `llm models list`) or a path to a .gguf file;
    it defaults to -m/--model, $LLMCLI_MODEL, or smollm2."""
    if model_arg and ctx.get_parameter_source("model") == click.core.ParameterSource.COMMANDLINE \
            and model_arg != model:
        raise click.UsageError("give the model either as MODEL or with -m/--model, not both")
    from llmcli.gguf import open_gguf

    gguf_file = open_gguf(resolve_model(model_arg or model))
    info = describe(gguf_file, with_tensors=show_tensors)
    if output_format == "json":
        click.echo(json.dumps(info, indent=2))
    elif show_template:
        template = info["chat_template"]
        if template is None:
            raise click.ClickException("this model has no chat template")
        # color=True: through a pipe the template is printed exactly, ANSI-like text and all
        click.echo(terminal_safe(template), color=True)
    else:
        _print_text(info)


# --- gathering --------------------------------------------------------------------------

def describe(gguf_file, with_tensors=False):
    """Everything `inspect` shows, as JSON-ready plain values."""
    from llmcli.errors import ModelError

    metadata = gguf_file.metadata
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelError(f"{gguf_file.path}: no general.architecture key; not a model file?")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelError(f"architecture {arch!r} is not supported (supported: "
                         f"{', '.join(SUPPORTED_ARCHITECTURES)})")
    file_type = metadata.get("general.file_type")
    template = metadata.get("tokenizer.chat_template")
    tensors = list(gguf_file.tensors.values())
    info = {
        "path": str(gguf_file.path),
        "file_size": gguf_file.file_size,
        "gguf_version": gguf_file.version,
        "alignment": gguf_file.alignment,
        "architecture": arch,
        "name": _plain(metadata.get("general.name")),
        "file_type": FILE_TYPES.get(file_type) if isinstance(file_type, int) else None,
        "hyperparameters": _hyperparameters(metadata, arch),
        "tokenizer": _tokenizer(metadata),
        # a template that is not a string is no template; it stays in "metadata" below
        "chat_template": template if isinstance(template, str) else None,
        "n_tensors": len(tensors),
        "n_parameters": sum(t.n_elements for t in tensors),
        "tensor_types": _tensor_types(tensors),
        "metadata": {key: _plain(value) for key, value in metadata.items()
                     if key != "tokenizer.chat_template" or not isinstance(value, str)},
    }
    if with_tensors:
        info["tensors"] = [{"name": t.name, "type": t.type.name, "shape": list(t.shape),
                            "n_elements": t.n_elements, "bytes": t.nbytes, "offset": t.offset}
                           for t in tensors]
    return info


def _hyperparameters(metadata, arch):
    values = {field: _plain(metadata.get(f"{arch}.{key}")) for field, key, _ in HYPERPARAMETERS}
    if values["head_dim"] is None and _positive_int(values["n_embd"]) \
            and _positive_int(values["n_heads"]):
        values["head_dim"] = values["n_embd"] // values["n_heads"]
    if values["n_vocab"] is None:
        values["n_vocab"] = _length(metadata.get("tokenizer.ggml.tokens"))
    if values["norm_eps"] is None:
        values["norm_eps"] = _plain(metadata.get(f"{arch}.attention.layer_norm_epsilon"))
    return values


def _tokenizer(metadata):
    kind = _plain(metadata.get("tokenizer.ggml.model"))
    tokens = metadata.get("tokenizer.ggml.tokens")
    n_tokens = _length(tokens) or 0
    special = {}
    for key, value in metadata.items():
        if key.startswith("tokenizer.ggml.") and key.endswith("_token_id") and isinstance(value, int):
            role = key[len("tokenizer.ggml."):-len("_token_id")]
            text = tokens[value] if 0 <= value < n_tokens else None
            special[role] = {"id": value, "text": text if isinstance(text, str) else None}
    return {
        "model": kind,
        "kind": TOKENIZER_KINDS.get(kind, "unknown") if isinstance(kind, str) else "unknown",
        "pre": _plain(metadata.get("tokenizer.ggml.pre")),
        "n_tokens": n_tokens,
        "n_merges": _length(metadata.get("tokenizer.ggml.merges")),
        "has_scores": "tokenizer.ggml.scores" in metadata,
        "add_bos": _plain(metadata.get("tokenizer.ggml.add_bos_token")),
        "add_eos": _plain(metadata.get("tokenizer.ggml.add_eos_token")),
        "special_tokens": special,
    }


def _tensor_types(tensors):
    counts, sizes = Counter(), Counter()
    for t in tensors:
        counts[t.type.name] += 1
        sizes[t.type.name] += t.nbytes
    return [{"type": name, "count": counts[name], "bytes": sizes[name]}
            for name in sorted(counts, key=lambda n: -sizes[n])]


def _length(value):
    """len() of an array value; None for anything else (a hostile file may put a number
    where an array belongs)."""
    import numpy as np

    from llmcli.gguf import StringArray

    return len(value) if isinstance(value, (np.ndarray, list, StringArray)) else None


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _plain(value):
    """A metadata value as JSON: arrays longer than 16 items become a summary, and
    non-finite floats (which JSON cannot hold) become strings."""
    import math

    import numpy as np

    from llmcli.gguf import StringArray

    if isinstance(value, (np.ndarray, list, StringArray)):
        if len(value) > 16:
            return {"array_length": len(value)}
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# --- text output ---------------------------------------------------------------------------

def _print_text(info):
    from rich.console import Console

    console = Console(highlight=False)
    console.print(_section("Model", [
        ("file", info["path"]),
        ("size", f"{_size(info['file_size'])} (GGUF v{info['gguf_version']}, "
                 f"alignment {info['alignment']})"),
        ("architecture", info["architecture"]),
        ("name", info["name"]),
        ("file type", info["file_type"]),
    ]))
    hyper, arch = info["hyperparameters"], info["architecture"]
    shown_keys = {f"{arch}.{key}" for _, key, _ in HYPERPARAMETERS}
    others = [(key[len(arch) + 1:], value) for key, value in info["metadata"].items()
              if key.startswith(arch + ".") and key not in shown_keys]
    console.print(_section(f"Hyperparameters ({arch}.*)",
                           [(label, hyper[field]) for field, _, label in HYPERPARAMETERS] + others))
    console.print(_section("Tokenizer", _tokenizer_rows(info["tokenizer"])))
    template = info["chat_template"]
    console.print(_section("Chat template", [(
        "present", f"yes, {len(template)} characters (--template prints it)"
        if template is not None else "no")]))
    console.print(_tensor_table(info))
    if "tensors" in info:
        console.print(_all_tensors_table(info["tensors"]))


def _tokenizer_rows(tok):
    rows = [("kind", f"{tok['model']}: {tok['kind']}" if tok["model"] else None),
            ("pre-tokenizer", tok["pre"]), ("tokens", tok["n_tokens"])]
    if tok["n_merges"] is not None:
        rows.append(("merges", tok["n_merges"]))
    rows += [("add BOS", tok["add_bos"]), ("add EOS", tok["add_eos"])]
    for role, token in tok["special_tokens"].items():
        text = "(out of range)" if token["text"] is None else repr(token["text"])
        rows.append((f"{role} token", f"{token['id']}  {text}"))
    return rows


def _section(title, rows):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", title_style="bold", show_header=False,
                  box=None, padding=(0, 2))
    table.add_column(style="cyan")
    table.add_column()
    for label, value in rows:
        shown = "—" if value is None else _one_line(value)
        table.add_row(Text(_one_line(label)), Text(shown))
    return table


def _tensor_table(info):
    from rich.table import Table

    table = Table(title=f"Tensors: {info['n_tensors']}, {info['n_parameters'] / 1e6:.1f}M "
                        "parameters", title_justify="left", title_style="bold")
    for name in ("type", "count", "bytes", "share"):
        table.add_column(name, justify="left" if name == "type" else "right")
    total = sum(row["bytes"] for row in info["tensor_types"]) or 1
    for row in info["tensor_types"]:
        table.add_row(row["type"], str(row["count"]), _size(row["bytes"]),
                      f"{100 * row['bytes'] / total:.1f}%")
    return table


def _all_tensors_table(tensors):
    from rich.table import Table
    from rich.text import Text

    table = Table(title="All tensors (shape in ggml order: ne0 first)", title_justify="left",
                  title_style="bold")
    for name in ("name", "type", "shape", "bytes", "offset"):
        table.add_column(name, justify="left" if name in ("name", "type", "shape") else "right",
                         overflow="fold")
    for t in tensors:
        table.add_row(Text(_one_line(t["name"])), t["type"], " × ".join(map(str, t["shape"])),
                      _size(t["bytes"]), str(t["offset"]))
    return table


def _one_line(value):
    if isinstance(value, float):
        value = f"{value:.7g}"  # float32 metadata: 1e-05, not 9.999999747378752e-06
    return escape_control(str(value), keep_newlines=False)


def _size(n):
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
