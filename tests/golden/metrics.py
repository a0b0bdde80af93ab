"""Distances between a candidate's logits and a golden made by the float reference.

Pure NumPy, no state: imported by our tests (`from golden import metrics`) and by the
scripts in this folder (compare_llamacpp.py), so every implementation is judged by the
same formulas. A golden prompt (see make_forward_goldens.py) holds, per position of the
prompt, the reference's argmax and top-1/top-2 margin; at a few positions its top-20 ids
and logits; and 32 greedy tokens with the margin at each step.
"""
from typing import NamedTuple

import numpy as np

NEAR_TIE = 0.1  # below this top-1/top-2 margin, float rounding may flip the argmax


class Agreement(NamedTuple):
    agree: int              # positions where candidate argmax == reference argmax
    total: int              # positions whose reference margin exceeds the threshold
    mismatches: list        # those positions where they differ

    @property
    def rate(self) -> float:
        return self.agree / self.total if self.total else 1.0


class GreedyCheck(NamedTuple):
    agree_len: int          # leading steps where the two continuations are equal
    required_len: int       # steps before the reference's first near-tie
    ok: bool                # agree_len >= required_len (or both are fully equal)


def top_margin(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax and top-1 minus top-2 logit of each row of logits [n, n_vocab]."""
    logits = np.atleast_2d(np.asarray(logits, dtype=np.float32))
    top2 = np.partition(logits, -2, axis=-1)[:, -2:]
    return logits.argmax(axis=-1), top2[:, 1] - top2[:, 0]


def top20_max_abs_diff(cand_logits: np.ndarray, top_ids, top_logits) -> np.ndarray:
    """Per selected position, the max |candidate - reference| over the reference's top-20.

    cand_logits: [n_pos, n_vocab], the candidate's logits at the selected positions
    (same order as top_ids / top_logits, each [n_pos, 20]).
    """
    cand_logits = np.atleast_2d(np.asarray(cand_logits, dtype=np.float64))
    top_ids = np.asarray(top_ids, dtype=np.int64)
    ref = np.asarray(top_logits, dtype=np.float64)
    picked = np.take_along_axis(cand_logits, top_ids, axis=-1)
    return np.abs(picked - ref).max(axis=-1)


def argmax_agreement(cand_argmax, ref_argmax, ref_margin, min_margin: float) -> Agreement:
    """Agreement of argmaxes at the positions where the reference's margin > min_margin."""
    cand_argmax = np.asarray(cand_argmax)
    ref_argmax = np.asarray(ref_argmax)
    considered = np.asarray(ref_margin) > min_margin
    differ = considered & (cand_argmax != ref_argmax)
    total = int(considered.sum())
    return Agreement(total - int(differ.sum()), total, np.flatnonzero(differ).tolist())


def greedy_required_len(ref_margins, near_tie: float = NEAR_TIE) -> int:
    """Steps a faithful implementation must reproduce: those before the first near-tie.

    At a near-tie (margin < near_tie) either token is a legitimate greedy choice, and once
    the continuations differ their contexts differ, so later steps prove nothing.
    """
    ties = np.flatnonzero(np.asarray(ref_margins) < near_tie)
    return int(ties[0]) if ties.size else len(ref_margins)


def greedy_check(cand_ids, ref_ids, ref_margins, near_tie: float = NEAR_TIE) -> GreedyCheck:
    """Compare a candidate's greedy continuation with the reference's."""
    n = min(len(cand_ids), len(ref_ids))
    differ = np.flatnonzero(np.asarray(cand_ids[:n]) != np.asarray(ref_ids[:n]))
    agree_len = int(differ[0]) if differ.size else n
    required = min(greedy_required_len(ref_margins, near_tie), len(ref_ids))
    return GreedyCheck(agree_len, required, agree_len >= required)


def summary(values) -> dict:
    """Median and max of a list of non-negative figures (empty -> zeros)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"median": 0.0, "max": 0.0}
    return {"median": float(np.median(values)), "max": float(values.max())}


def compare_prompt(golden_prompt: dict, cand_logits: np.ndarray, cand_greedy=None) -> dict:
    """All metrics of one golden prompt against a candidate.

    cand_logits: [n_prompt, n_vocab], the candidate's teacher-forced logits over the
    golden prompt ids; cand_greedy: the candidate's own greedy continuation (optional).
    """
    cand_argmax, _ = top_margin(cand_logits)
    ref_argmax, ref_margin = golden_prompt["argmax"], golden_prompt["margin"]
    positions = golden_prompt["top_positions"]
    diffs = top20_max_abs_diff(cand_logits[positions], golden_prompt["top_ids"],
                               golden_prompt["top_logits"])
    result = {
        "max_abs_dlogit": float(diffs.max()),
        "max_abs_dlogit_last": float(diffs[positions.index(len(ref_argmax) - 1)]),
        "argmax_0.1": argmax_agreement(cand_argmax, ref_argmax, ref_margin, 0.1),
        "argmax_0.5": argmax_agreement(cand_argmax, ref_argmax, ref_margin, 0.5),
    }
    if cand_greedy is not None:
        result["greedy"] = greedy_check(cand_greedy, golden_prompt["greedy_ids"],
                                        golden_prompt["greedy_margins"])
    return result
