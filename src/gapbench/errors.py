"""User-facing errors: one template everywhere.

A :class:`GapbenchError` is a mistake the user can fix (bad parameter, missing file, unknown name). The
CLI prints its message as one paragraph and exits non-zero, without a traceback. Anything else is a bug and
keeps its traceback.

The message template follows scikit-learn: *"The 'delta' parameter of bound() must be a float in (0, 1).
Got 1.5 instead."*, followed by how to fix it where that is not obvious.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any


class GapbenchError(Exception):
    """An error caused by user input; its message says what was expected, what was received, and the fix."""


class DataError(GapbenchError):
    """A dataset is missing, corrupt, truncated or inconsistent."""


class ConfigError(GapbenchError):
    """A configuration value or key is invalid."""


def param_error(param: str, where: str, expected: str, got: Any, fix: str = "") -> GapbenchError:
    """Build the standard message: The 'param' parameter of where must be expected. Got got instead."""
    msg = f"The '{param}' parameter of {where} must be {expected}. Got {got!r} instead."
    if fix:
        msg += f" {fix}"
    return GapbenchError(msg)


def unknown_name(kind: str, name: str, known: Iterable[str], where: str = "") -> GapbenchError:
    """Error for an unknown registry name, listing the known ones and the closest match.

    `where` adds context after the name, e.g. " for experiment 'nk2019-fig1'".
    """
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return GapbenchError(f"Unknown {kind} '{name}'{where}.{hint} Known {kind}s: {', '.join(known)}.")


def check_probability(value: Any, param: str, where: str, *, open_low: bool = True,
                      open_high: bool = True) -> float:
    """Validate a number in (0, 1) (or with closed ends) and return it as float."""
    lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
    expected = f"a float in {lo}0, 1{hi}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise param_error(param, where, expected, value)
    ok_lo = value > 0 if open_low else value >= 0
    ok_hi = value < 1 if open_high else value <= 1
    if not (ok_lo and ok_hi):
        raise param_error(param, where, expected, value)
    return float(value)


def check_positive_int(value: Any, param: str, where: str, *, minimum: int = 1) -> int:
    """Validate an integer >= minimum and return it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise param_error(param, where, f"an int >= {minimum}", value)
    return int(value)


def check_positive_float(value: Any, param: str, where: str, *, allow_zero: bool = False) -> float:
    """Validate a finite float > 0 (or >= 0) and return it."""
    expected = "a finite float >= 0" if allow_zero else "a finite float > 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise param_error(param, where, expected, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise param_error(param, where, expected, value)
    return float(value)


def check_choice(value: Any, param: str, where: str, choices: Iterable[str]) -> str:
    """Validate that value is one of choices."""
    choices = list(choices)
    if value not in choices:
        raise param_error(param, where, f"one of {choices}", value)
    return value
