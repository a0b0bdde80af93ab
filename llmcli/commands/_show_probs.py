"""`llm generate --show-probs K` and `--step`: generation shown step by step with the
distribution each token was drawn from (the sampler's own `last` Draw, via the chunks of
llmcli.generate), and an interactive mode where the user accepts or overrides each draw."""
import sys

from llmcli.commands._views import fmt_prob, label, prob_style, quoted

STEP_CHOICES = 10   # alternatives offered by --step: one digit each


def probs_line(tokenizer, chunk, k):
    """Rich Text: the token, its probability, and up to k alternatives, coloured."""
    from rich.text import Text

    line = Text()
    line.append(f"{quoted(tokenizer, chunk.token):<16}", style=prob_style(chunk.prob or 0.0))
    line.append(f" {fmt_prob(chunk.prob or 0.0):>7}  │ ")
    others = [(i, p) for i, p in chunk.top_probs if i != chunk.token][:k]
    for n, (token_id, p) in enumerate(others):
        if n:
            line.append(" · ", style="dim")
        line.append(f"{label(tokenizer, token_id)} {fmt_prob(p)}", style=prob_style(p))
    return line


def raw_line(tokenizer, chunk, k):
    """Rich Text: the model's raw distribution at this step (before any sampler stage)."""
    import math

    from rich.text import Text

    line = Text("   raw: ", style="dim")
    line.append(f"p={fmt_prob(math.exp(chunk.logprob))}  │ ", style="dim")
    line.append(" · ".join(f"{label(tokenizer, i)} {fmt_prob(math.exp(lp))}"
                           for i, lp in chunk.top_logprobs[:k]), style="dim")
    return line


class ShowProbsWriter:
    """Text output of --show-probs: one line per generated token, then the whole text."""

    def __init__(self, base, console=None):
        from rich.console import Console

        self.base = base       # a _TextWriter-like object collecting tokens and text
        self.console = console or Console(highlight=False)

    def chunk(self, chunk):
        self.base.tokens.extend([chunk.token] if chunk.token is not None else [])
        self.base.text.append(chunk.text)
        if chunk.token is None:
            return
        tokenizer, k = self.base.model.tokenizer, self.base.request.show_probs
        self.console.print(probs_line(tokenizer, chunk, k))
        if self.base.request.verbose:
            self.console.print(raw_line(tokenizer, chunk, k))

    def finish(self, final, load_seconds):
        from llmcli.commands._common import escape_control

        self.console.print()
        self.console.print(escape_control("".join(self.base.text)), markup=False)


class StepQuit(KeyboardInterrupt):
    """q at the --step prompt: ends the generation the way Ctrl-C does (the generator
    releases its held-back text), but it is the user's choice, not an interruption."""


class StepSampler:
    """Wraps a Sampler: after each draw, shows the sampler's top alternatives and reads
    a line: Enter keeps the drawn token, a digit picks that alternative, q stops."""

    def __init__(self, sampler, tokenizer, n_prompt, console=None, read_line=None):
        from rich.console import Console

        self.sampler, self.tokenizer, self.n_prompt = sampler, tokenizer, n_prompt
        self.console = console or Console(highlight=False)
        self.read_line = read_line or sys.stdin.readline
        self.quit = False   # set when the user pressed q

    @property
    def last(self):
        return self.sampler.last

    @property
    def seed(self):
        return self.sampler.seed

    def describe(self):
        return self.sampler.describe()

    def __call__(self, logits, history=()):
        from rich.text import Text

        drawn = self.sampler(logits, history)
        choices = self.sampler.last.top(STEP_CHOICES)
        so_far = self.tokenizer.decode(list(history)[self.n_prompt:])
        self.console.print(Text(f"\ntext so far: {so_far!r}", style="bold"))
        for n, (token_id, p) in enumerate(choices):
            mark = "  <- drawn" if token_id == drawn else ""
            self.console.print(Text(f"  [{n}] {quoted(self.tokenizer, token_id):<18} "
                                    f"{fmt_prob(p):>7}{mark}", style=prob_style(p)))
        if drawn not in (i for i, _ in choices):
            p = self.sampler.last.prob_of(drawn)
            self.console.print(Text(f"  drawn: {quoted(self.tokenizer, drawn):<15} "
                                    f"{fmt_prob(p):>7}", style=prob_style(p)))
        return self._ask(drawn, choices)

    def _ask(self, drawn, choices):
        while True:
            self.console.print("Enter = keep the drawn token, 0-9 = pick, q = stop: ", end="")
            answer = self.read_line()
            if answer == "":
                raise KeyboardInterrupt   # end of input (Ctrl-D): as Ctrl-C
            if answer.strip().lower() == "q":
                self.quit = True
                raise StepQuit
            answer = answer.strip()
            if not answer:
                return drawn
            if answer.isdigit() and int(answer) < len(choices):
                return choices[int(answer)][0]
            self.console.print(f"no choice {answer!r}", markup=False)
