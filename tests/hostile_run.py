"""Run the real `llm` command (`python -m llmcli`) on hostile input and check that it
fails the way issue 7 promises: the expected exit status, exactly one `Error:` line
naming the problem, no traceback, no death by signal, little CPU time, and memory
bounded by an address-space limit set in the child.

    outcome = run_llm("generate", "-m", path, "hi", home=tmp_path)
    assert_clean_error(outcome, r"tensor 'output.weight'")

Set LLMCLI_HOSTILE_REPORT=/some/file.jsonl to append one line per run (case, status,
CPU seconds, max RSS) for the closing report; benchmarks/hostile_summary.py sums it up.
"""
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The models are memory-mapped, so the address space holds their whole size; 3 GB is
# far above what a run needs and far below what a runaway allocation would ask for.
MEMORY_LIMIT = 3 << 30
CPU_SECONDS = 5.0      # "within a few seconds", measured as the child's CPU time
WALL_SECONDS = 120     # generous: the machine may be shared; a hang still fails
# Linux capabilities that let root ignore file permissions, and prctl(PR_CAPBSET_DROP)
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


@dataclass
class Outcome:
    args: tuple
    returncode: int      # negative: killed by that signal
    stdout: bytes
    stderr: str
    cpu: float           # child CPU seconds (user + system)
    wall: float
    max_rss_mb: float

    def error_lines(self):
        return [line for line in self.stderr.splitlines() if line.startswith("Error: ")]


def llm_env(home, env=None):
    """The child's environment: no LLMCLI_* settings from outside, offline, own cache."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("LLMCLI_")}
    full.update({"PYTHONPATH": str(ROOT), "LLMCLI_OFFLINE": "1", "LLMCLI_HOME": str(home),
                 "COLUMNS": "200", "OMP_WAIT_POLICY": "PASSIVE"})
    full.update(env or {})
    return {k: v for k, v in full.items() if v is not None}


def child_limits(honour_permissions=False):
    """preexec_fn: the address-space limit; with honour_permissions, a root child loses
    the capabilities that let it read a mode-000 file or write a read-only folder."""
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        if honour_permissions and os.getuid() == 0:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
                if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    return apply


def run_llm(*args, home, stdin=b"", env=None, stdout=None, honour_permissions=False,
            timeout=WALL_SECONDS):
    """Run `python -m llmcli ARGS` to completion; stdin is bytes (or an open file),
    stdout is captured unless a file object is given."""
    with tempfile.TemporaryFile() as stdin_file, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        if isinstance(stdin, bytes):
            stdin_file.write(stdin)
            stdin_file.seek(0)
            stdin = stdin_file
        start = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "llmcli", *map(str, args)],
                                   stdin=stdin, stdout=stdout or out, stderr=err,
                                   env=llm_env(home, env), preexec_fn=child_limits(honour_permissions))
        status, usage, peak_kb = wait_with_usage(process, timeout)
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        outcome = Outcome(args, status, out.read(), err.read().decode("utf-8", "replace"),
                          usage.ru_utime + usage.ru_stime, wall, peak_kb / 1024)
    _report(outcome)
    return outcome


def wait_with_usage(process, timeout):
    """(exit status as Popen reports it, rusage of the child, peak RSS in KiB); kills it
    on timeout. The peak is polled from /proc (VmHWM): the rusage maximum would include
    the pages the child shared with this (large) test process between fork and exec."""
    deadline = time.monotonic() + timeout
    peak_kb = 0
    while True:
        peak_kb = max(peak_kb, _peak_rss_kb(process.pid))
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage, peak_kb
        if time.monotonic() > deadline:
            process.kill()
            os.wait4(process.pid, 0)
            process.returncode = -9
            raise AssertionError(f"llm did not finish within {timeout} s: {process.args}")
        time.sleep(0.02)


def _peak_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def assert_clean_error(outcome, pattern, status=1, allowed=()):
    """Exit `status`, one `Error:` line matching `pattern`, nothing else on stderr but
    Click's usage lines (status 2) or lines matching `allowed`; no traceback, no signal,
    no exhausted memory, little CPU."""
    where = f"{outcome.args}: {outcome.stderr!r}"
    assert outcome.returncode == status, where
    errors = outcome.error_lines()
    assert len(errors) == 1, where
    assert re.search(pattern, errors[0]), f"{errors[0]!r} does not match {pattern!r}"
    assert "Traceback" not in outcome.stderr, where
    assert "internal error" not in errors[0], where
    assert "out of memory" not in errors[0], where   # the address-space limit was hit
    if status == 1:
        others = [line for line in outcome.stderr.splitlines()
                  if line not in errors and not any(re.search(a, line) for a in allowed)]
        assert others == [], where
    assert outcome.cpu < CPU_SECONDS, f"{outcome.cpu:.2f} s of CPU: {where}"


def assert_no_crash(outcome):
    """Exit 0 or 1 (a clean error), never a signal or a traceback."""
    where = f"{outcome.args}: {outcome.stderr!r}"
    assert outcome.returncode in (0, 1), where
    assert "Traceback" not in outcome.stderr and "internal error" not in outcome.stderr, where
    if outcome.returncode == 1:
        assert len(outcome.error_lines()) == 1, where


def _report(outcome):
    path = os.environ.get("LLMCLI_HOSTILE_REPORT")
    if path:
        with open(path, "a") as f:
            # the test that ran it (pytest sets this variable): the case, for the report
            case = os.environ.get("PYTEST_CURRENT_TEST", "").removesuffix(" (call)")
            f.write(json.dumps({"case": case, "args": [str(a) for a in outcome.args][:4],
                                "status": outcome.returncode, "cpu": round(outcome.cpu, 3),
                                "max_rss_mb": round(outcome.max_rss_mb, 1)}) + "\n")
