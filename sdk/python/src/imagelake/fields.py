"""Declared fields: the types a processor's metadata may use, and a checker.

The platform checks every result against the declared fields (and refuses one
that does not match with PROCESSOR_OUTPUT_INVALID); validate() runs the same
rules locally so that `--test` can say what would be refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "FIELD_NAME",
    "FIELD_TYPE",
    "MAX_LABEL_LENGTH",
    "MAX_LABELS",
    "MAX_LIST_LENGTH",
    "MAX_SAFE_INTEGER",
    "MAX_STRING_LENGTH",
    "check_fields",
    "validate",
]

#: string, integer, number or boolean, each optionally a list (`[]`); or object.
#: A trailing `?` makes any of them optional (missing or null).
FIELD_TYPE = re.compile(r"^(?:(?:string|integer|number|boolean)(?:\[\])?|object)\??$")

#: Field names become analytics dimensions named PROCESSOR.FIELD, so they are
#: identifiers: a letter or _, then up to 63 letters, digits, _ and -.
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")

MAX_STRING_LENGTH = 10_000
MAX_LIST_LENGTH = 1_000
MAX_LABELS = 100
MAX_LABEL_LENGTH = 100
#: Integers must survive a trip through a JavaScript number (Number.isSafeInteger).
MAX_SAFE_INTEGER = 2**53 - 1


def check_fields(fields: Any) -> list[str]:
    """What is wrong with a `fields` declaration (an empty list when nothing is)."""
    if not isinstance(fields, Mapping):
        return [f"fields must be a dict of field name to type, not {type(fields).__name__}"]
    problems = []
    for name, kind in fields.items():
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            problems.append(
                f"field name {name!r} must be an identifier "
                "(a letter or _, then up to 63 letters, digits, _ and -)"
            )
        if not isinstance(kind, str) or not FIELD_TYPE.match(kind):
            problems.append(
                f"field {name!r} has type {kind!r}; use string, integer, number, boolean, "
                "string[], integer[], number[], boolean[] or object, with a trailing ? if optional"
            )
    return problems


def _is_string(value: Any) -> str | None:
    if not isinstance(value, str):
        return "a string"
    if len(value) > MAX_STRING_LENGTH:
        return f"a string of at most {MAX_STRING_LENGTH:,} characters (this one has {len(value):,})"
    return None


def _is_integer(value: Any) -> str | None:
    whole = isinstance(value, int) and not isinstance(value, bool)
    whole = whole or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if not whole:
        return "a whole number"
    if abs(value) > MAX_SAFE_INTEGER:
        return f"a whole number between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}"
    return None


def _is_number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    return None


def _is_boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


_SCALARS = {"string": _is_string, "integer": _is_integer, "number": _is_number, "boolean": _is_boolean}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_value(kind: str, value: Any) -> str | None:
    """None if value fits kind (without its `?`), else what was expected."""
    if kind == "object":
        return None if isinstance(value, Mapping) else "an object (dict)"
    if kind.endswith("[]"):
        check = _SCALARS[kind[:-2]]
        if not isinstance(value, (list, tuple)):
            return f"a list ({kind})"
        if len(value) > MAX_LIST_LENGTH:
            return f"a list of at most {MAX_LIST_LENGTH:,} items (this one has {len(value):,})"
        for index, item in enumerate(value):
            expected = check(item)
            if expected:
                return f"a list ({kind}), but item {index} is {_describe(item)}, not {expected}"
        return None
    return _SCALARS[kind](value)


def validate(fields: Mapping[str, str], metadata: Any, labels: Any = None) -> list[str]:
    """Checks metadata (and labels, if given) as the platform will.

    Returns one message per problem; an empty list means the platform would
    accept the result. Use it in tests or while developing; the SDK itself
    never refuses a result for these reasons.
    """
    problems = check_fields(fields)
    if problems:
        return problems
    if not isinstance(metadata, Mapping):
        return [f"metadata must be an object (dict), not {type(metadata).__name__}"]
    for name in metadata:
        if name not in fields:
            problems.append(f"field {name!r} is not declared in fields")
    for name, declared in fields.items():
        optional = declared.endswith("?")
        kind = declared[:-1] if optional else declared
        value = metadata.get(name)
        if value is None:
            if not optional:
                state = "null" if name in metadata else "missing"
                problems.append(f"field {name!r} ({declared}) is {state}; declare it {kind}? if it may be")
            continue
        expected = _check_value(kind, value)
        if expected:
            problems.append(f"field {name!r} must be {expected}, not {_describe(value)}")
    if labels is not None:
        if not isinstance(labels, (list, tuple)):
            problems.append(f"labels must be a list of strings, not {type(labels).__name__}")
        else:
            if len(labels) > MAX_LABELS:
                problems.append(f"labels has {len(labels)} items; at most {MAX_LABELS} are accepted")
            for label in labels:
                if not isinstance(label, str):
                    problems.append(f"label {_describe(label)} is not a string")
                elif not label:
                    problems.append("labels must not be empty strings")
                elif len(label) > MAX_LABEL_LENGTH:
                    problems.append(
                        f"label {_describe(label)} has {len(label)} characters; at most {MAX_LABEL_LENGTH}"
                    )
    return problems
