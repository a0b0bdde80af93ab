"""Sum up a hostile-input report (issue 7's closing figures): runs and test cases, exit
statuses, the largest peak RSS and CPU time and the runs that had them.

    LLMCLI_HOSTILE_REPORT=/tmp/hostile_report.jsonl python -m pytest tests/test_hostile_*.py ...
    python benchmarks/hostile_summary.py /tmp/hostile_report.jsonl

Each line of the report is one `llm` child run by tests/hostile_run.py.
"""
import json
import sys
from collections import Counter


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def describe(run):
    return f"{run.get('case') or '?'}  [llm {' '.join(run['args'])}]"


def summary(runs):
    statuses = Counter(run["status"] for run in runs)
    cases = {run.get("case") for run in runs}
    lines = [f"llm runs: {len(runs)} from {len(cases)} test cases",
             "exit statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))]
    lines += extremes(runs, "")
    # per test file: hostile model files, templates and command lines differ a lot
    for module in sorted({run.get("case", "").split("::")[0] for run in runs}):
        group = [run for run in runs if run.get("case", "").split("::")[0] == module]
        lines += [f"{module or '(no test case)'}: {len(group)} runs"] + extremes(group, "  ")
    return "\n".join(lines)


def extremes(runs, indent):
    by_rss = max(runs, key=lambda run: run["max_rss_mb"])
    by_cpu = max(runs, key=lambda run: run["cpu"])
    return [f"{indent}max peak RSS: {by_rss['max_rss_mb']:.1f} MB  {describe(by_rss)}",
            f"{indent}max CPU time: {by_cpu['cpu']:.2f} s  {describe(by_cpu)}"]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: hostile_summary.py REPORT.jsonl")
    print(summary(load(sys.argv[1])))
