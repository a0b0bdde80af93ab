"""Run a fuzz target until it has used a given amount of CPU time, restarting it after
each finding (the corpus carries over), and report executions and findings.

    nice -n 19 python fuzz/run_for_cpu.py gguf 30 [-- extra libFuzzer options]
    nice -n 19 python fuzz/run_for_cpu.py tokenizer 30

Corpus: fuzz/corpus/<target>/ (not committed); findings: fuzz/findings/<target>/.
CPU time, not wall time, is the budget: the machine may be shared.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPTIONS = {
    "gguf": ["-max_len=70000", "-timeout=60", "-rss_limit_mb=3000", f"-dict={HERE / 'gguf.dict'}"],
    "tokenizer": ["-max_len=4096", "-timeout=60", "-rss_limit_mb=3000"],
}


def cpu_seconds(pid):
    """utime + stime of a live process, from /proc (clock ticks -> seconds)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(target, budget, extra, log):
    corpus = HERE / "corpus" / target
    findings = HERE / "findings" / target
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(HERE / f"fuzz_{target}.py"), *OPTIONS[target], *extra,
               f"-artifact_prefix={findings}/",
               str(corpus), str(HERE / "seeds" / target)]
    start = log.tell()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    used = 0.0
    while process.poll() is None:
        used = cpu_seconds(process.pid) or used
        if used >= budget:
            process.send_signal(signal.SIGINT)   # libFuzzer prints its final stats
            process.wait()
            break
        time.sleep(2)
    log.seek(start)
    # libFuzzer's status lines start "#<executions>"; the last one is the total
    counts = [int(n) for n in re.findall(r"^#(\d+)\s", log.read(), re.MULTILINE)]
    return used, max(counts, default=0)


def main():
    target, minutes = sys.argv[1], float(sys.argv[2])
    extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    log_path = HERE / "findings" / f"{target}.log"
    (HERE / "findings").mkdir(exist_ok=True)
    total, runs, executions = 0.0, 0, 0
    with open(log_path, "a+") as log:
        while total < minutes * 60:
            used, count = run_once(target, minutes * 60 - total, extra, log)
            total, runs, executions = total + used, runs + 1, executions + count
            log.seek(0, os.SEEK_END)
    found = sorted(p.name for p in (HERE / "findings" / target).iterdir())
    print(f"{target}: {total / 60:.1f} CPU-minutes, {executions} executions, "
          f"{runs} fuzzer run(s), findings: {found or 'none'}")


if __name__ == "__main__":
    main()
