"""What `llm generate` does once its options are parsed: load the model, build the
prompt tokens (chat template or raw), sample, and write the chunks in the chosen
format. Printing happens only here and in the command module."""
import sys
import time
from dataclasses import dataclass

import click

from llmcli.commands._common import json_text, terminal_safe


@dataclass
class GenerateRequest:
    model: str
    prompt: str
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int | None = None
    max_tokens: int = 256
    stops: tuple = ()
    ignore_eos: bool = False
    ctx_size: int | None = None
    threads: int | None = None
    raw_mode: bool | None = None
    system: str | None = None
    show_prompt: bool = False
    show_stats: bool = False
    output_format: str = "text"
    top_logprobs: int = 0
    raw_output: bool = False
    decode_errors: str = "strict"
    verbose: bool = False
    show_probs: int = 0       # --show-probs K: each token with K alternatives
    step: bool = False        # --step: interactive, on a terminal


def run(request, load_model):
    """Generate for `request`; returns the finish reason. load_model(name, n_ctx, threads)."""
    from llmcli.generate import generate
    from llmcli.sampling import make_sampler

    start = time.perf_counter()
    model = load_model(request.model, request.ctx_size, request.threads)
    load_seconds = time.perf_counter() - start
    use_chat = _chat_mode(request, model)
    prompt_text, prompt_ids = _prompt_tokens(request, model, use_chat)
    sampler = make_sampler(request.temperature, request.top_k, request.top_p, request.min_p,
                           request.repeat_penalty, request.repeat_last_n, request.seed)
    if request.show_prompt:
        _echo_err(f"{terminal_safe(prompt_text, sys.stderr)}\n"
                  f"[prompt: {len(prompt_ids)} tokens]")
    if request.verbose:
        _echo_err(f"model: {model.name} ({model.config.arch}, {model.path}); "
                  f"context {model.n_ctx} tokens; mode {'chat' if use_chat else 'raw'}\n"
                  f"sampler: {sampler.describe()}")

    logprobs = {"text": None, "json": request.top_logprobs or None,
                "jsonl": request.top_logprobs}[request.output_format]
    if request.show_probs and request.verbose:
        logprobs = request.show_probs   # the raw distribution too
    if request.step:
        from llmcli.commands._show_probs import StepSampler

        sampler = StepSampler(sampler, model.tokenizer, len(prompt_ids))
    chunks = generate(model, prompt_ids, sampler, request.max_tokens, request.stops,
                      request.ignore_eos, logprobs=logprobs,
                      top_probs=request.show_probs + 1 if request.show_probs else 0)
    writer = _WRITERS[request.output_format](request, model, sampler, use_chat, prompt_ids)
    if request.show_probs:
        from llmcli.commands._show_probs import ShowProbsWriter

        writer = ShowProbsWriter(writer)
    final = _drive(chunks, writer)
    if final is None:   # Ctrl-C before the generator even started
        raise KeyboardInterrupt
    if request.step and sampler.quit:
        final.finish_reason = "quit"   # q at the --step prompt: exit 0, not 130
    writer.finish(final, load_seconds)
    if request.show_stats:
        _echo_err(_stats_text(final.stats, load_seconds, final.finish_reason))
    return final.finish_reason


def _drive(chunks, writer):
    """Feed every chunk to the writer. Ctrl-C while the writer runs is handed to the
    generator, which releases its held-back text in a final `interrupted` chunk."""
    last = None
    try:
        for chunk in chunks:
            last = chunk
            writer.chunk(chunk)
    except KeyboardInterrupt:
        try:
            last = chunks.throw(KeyboardInterrupt)
            writer.chunk(last)
        except (StopIteration, KeyboardInterrupt):
            if last is not None:
                last.finish_reason = "interrupted"
    return last


def prompt_for(request, model):
    """(chat mode?, text the model sees, its token ids) for request.prompt, built the way
    `llm generate` builds it (also used by the views: `llm probs`, `explain`...)."""
    use_chat = _chat_mode(request, model)
    return (use_chat, *_prompt_tokens(request, model, use_chat))


def _chat_mode(request, model):
    has_template = bool(model.tokenizer.chat_template)
    if request.raw_mode is False and not has_template:
        raise click.UsageError(f"--chat: model {model.name} has no chat template; "
                               "use raw completion (--raw)")
    use_chat = has_template if request.raw_mode is None else not request.raw_mode
    if request.system is not None and not use_chat:
        why = "--raw was given" if has_template else f"model {model.name} has no chat template"
        raise click.UsageError(f"-s/--system needs chat mode, but {why}")
    return use_chat


def _prompt_tokens(request, model, use_chat):
    """(text the model sees, its token ids)."""
    from llmcli.generate import check_text_could_fit

    check_text_could_fit(request.prompt, model.tokenizer, model.n_ctx)
    if use_chat:
        from llmcli import chat  # Jinja: ~30 ms of a start, only for chat templates

        prompt = chat.chat_prompt(model.tokenizer,
                                  chat.build_messages(request.prompt, request.system))
        return prompt.text, prompt.ids
    ids = model.tokenizer.encode(request.prompt, add_special=True, parse_special=False)
    return request.prompt, ids


def _echo_err(text):
    # Model names and paths come from files: escaped on a terminal; elsewhere exactly as
    # they are (color=True: Click would strip what looks like ANSI codes).
    click.echo(terminal_safe(text, sys.stderr), err=True, color=True)


def _stats_text(stats, load_seconds, finish_reason):
    if stats.prefill_seconds:
        cached = stats.prompt_tokens - stats.prefill_tokens
        reuse = f" ({cached} from cache)" if cached else ""
        prefill = f"{reuse}, {stats.prefill_tokens_per_second:.1f} tokens/s"
    else:   # Ctrl-C during the prefill: no speed to report, nothing came from a cache
        prefill = ", interrupted before the prefill finished"
    first = (f"first token after {stats.first_token_seconds:.3f} s"
             if stats.generated_tokens else "first token: none")
    return "\n".join([
        f"load:      {load_seconds:.2f} s",
        f"prompt:    {stats.prompt_tokens} tokens{prefill}",
        f"generated: {stats.generated_tokens} tokens, "
        f"{stats.decode_tokens_per_second:.1f} tokens/s",
        first,
        f"finish:    {finish_reason}",
    ])


# --- output formats ------------------------------------------------------------------------



class _Writer:
    def __init__(self, request, model, sampler, use_chat, prompt_ids):
        self.request, self.model, self.sampler = request, model, sampler
        self.use_chat, self.prompt_ids = use_chat, prompt_ids
        self.tokens, self.text = [], []

    def chunk(self, chunk):
        if chunk.token is not None:
            self.tokens.append(chunk.token)
        self.text.append(chunk.text)

    def write(self, text):
        sys.stdout.write(text)
        sys.stdout.flush()

    def summary(self, final, load_seconds):
        r = self.request
        options = {
            "temperature": r.temperature, "top_k": r.top_k, "top_p": r.top_p,
            "min_p": r.min_p, "repeat_penalty": r.repeat_penalty,
            "repeat_last_n": r.repeat_last_n, "seed": self.sampler.seed,
            "max_tokens": r.max_tokens, "stop": list(r.stops), "ignore_eos": r.ignore_eos,
            "ctx_size": self.model.n_ctx, "mode": "chat" if self.use_chat else "raw",
            "system": r.system,
        }
        stats = {"load_seconds": round(load_seconds, 6), **final.stats.as_dict()}
        return {"model": self.model.name, "options": options,
                "prompt_tokens": list(self.prompt_ids), "tokens": self.tokens,
                "text": "".join(self.text), "finish_reason": final.finish_reason,
                "stats": stats}

    def token_record(self, chunk):
        decode = self.model.tokenizer.decode
        record = {"id": chunk.token, "text": chunk.text, "piece": chunk.piece,
                  "logprob": chunk.logprob}
        if self.request.top_logprobs:
            record["top_logprobs"] = [{"id": i, "text": decode([i]), "logprob": lp}
                                      for i, lp in chunk.top_logprobs]
        return record


class _TextWriter(_Writer):
    def chunk(self, chunk):
        super().chunk(chunk)
        if chunk.text:
            self.write(terminal_safe(chunk.text, sys.stdout, raw=self.request.raw_output))

    def finish(self, final, load_seconds):
        text = "".join(self.text)
        # A terminal gets a final newline so the shell prompt starts on its own line;
        # a pipe gets exactly the generated text.
        if text and not text.endswith("\n") and sys.stdout.isatty():
            self.write("\n")


class _JsonWriter(_Writer):
    def __init__(self, *args):
        super().__init__(*args)
        self.records = []

    def chunk(self, chunk):
        super().chunk(chunk)
        if chunk.token is not None and self.request.top_logprobs:
            self.records.append(self.token_record(chunk))

    def finish(self, final, load_seconds):
        obj = self.summary(final, load_seconds)
        if self.request.top_logprobs:
            obj["logprobs"] = self.records
        self.write(json_text(obj) + "\n")


class _JsonlWriter(_Writer):
    def chunk(self, chunk):
        super().chunk(chunk)
        if chunk.token is not None:
            self.write(json_text({"type": "token", **self.token_record(chunk)}) + "\n")
        elif chunk.text:   # text released by an interruption, with no token of its own
            self.write(json_text({"type": "text", "text": chunk.text}) + "\n")

    def finish(self, final, load_seconds):
        self.write(json_text({"type": "summary", **self.summary(final, load_seconds)})
                   + "\n")


_WRITERS = {"text": _TextWriter, "json": _JsonWriter, "jsonl": _JsonlWriter}
