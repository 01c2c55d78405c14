"""The processor contract in Python: the decorator, what process() returns, and
how one call becomes a response."""

from __future__ import annotations

import inspect
import json
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .fields import check_fields
from .tracing import process_span, record_failure

__all__ = [
    "NAME",
    "DerivedImage",
    "Outcome",
    "Processor",
    "ProcessorDefinitionError",
    "ProcessorError",
    "Result",
    "execute",
    "get_processor",
    "processor",
    "to_json_bytes",
]

#: What a processor name must look like (the platform uses it in paths and dimension names).
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

#: The stdio protocol version written in the hello frame.
PROTOCOL_VERSION = 1


class ProcessorError(Exception):
    """Raise it from process() to fail this image with your own code, e.g.
    ProcessorError("NO_FACES", "No face was found.").

    The platform does not try the image again: the same bytes would fail the same
    way. Pass retryable=True when the cause may pass (a service it calls is down),
    and the platform retries it with backoff, up to IMAGELAKE_JOB_ATTEMPTS."""

    def __init__(self, code: str, message: str | None = None, *, retryable: bool = False) -> None:
        if not isinstance(code, str) or not code:
            raise TypeError(f"ProcessorError code must be a non-empty string, not {code!r}")
        if not isinstance(retryable, bool):
            raise TypeError(f"ProcessorError retryable must be True or False, not {retryable!r}")
        self.code = code
        self.message = code if message is None else str(message)
        self.retryable = retryable
        super().__init__(code, self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ProcessorDefinitionError(ValueError):
    """@processor(...) was given something the platform would not accept."""


@dataclass
class DerivedImage:
    """An image made from the input, stored next to the renditions as NAME.FORMAT."""

    name: str
    format: str
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"DerivedImage name must be a non-empty string, not {self.name!r}")
        if not isinstance(self.format, str) or not self.format:
            raise TypeError(f"DerivedImage format must be a non-empty string, not {self.format!r}")
        if isinstance(self.data, (bytearray, memoryview)):
            self.data = bytes(self.data)
        if not isinstance(self.data, bytes):
            raise TypeError(f"DerivedImage data must be bytes, not {type(self.data).__name__}")


@dataclass
class Result:
    """What process() returns when it has more than metadata: labels, derived images."""

    metadata: Mapping[str, Any] = field(default_factory=dict)
    labels: list[str] | None = None
    images: list[DerivedImage] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.metadata is None:
            self.metadata = {}
        if not isinstance(self.metadata, Mapping):
            raise TypeError(f"Result metadata must be a dict, not {type(self.metadata).__name__}")
        if self.labels is not None:
            if isinstance(self.labels, (str, bytes)) or not isinstance(self.labels, (list, tuple)):
                raise TypeError(f"Result labels must be a list of strings, not {type(self.labels).__name__}")
            self.labels = list(self.labels)
            for label in self.labels:
                if not isinstance(label, str):
                    raise TypeError(f"Result labels must be strings, not {label!r}")
        if self.images is None:
            self.images = []
        if not isinstance(self.images, (list, tuple)):
            raise TypeError(f"Result images must be a list of DerivedImage, not {type(self.images).__name__}")
        self.images = list(self.images)
        for image in self.images:
            if not isinstance(image, DerivedImage):
                raise TypeError(f"Result images must be DerivedImage objects, not {type(image).__name__}")


ProcessFunction = Callable[[bytes, dict], Any]


@dataclass(frozen=True)
class Processor:
    """A registered processor: its declaration and its function."""

    name: str
    version: str
    fields: Mapping[str, str]
    function: ProcessFunction

    def hello(self) -> dict[str, Any]:
        return {
            "imagelake": PROTOCOL_VERSION,
            "name": self.name,
            "version": self.version,
            "fields": dict(self.fields),
        }


_registered: list[Processor] = []


def processor(
    _function: Any = None,
    /,
    *,
    name: Any = None,
    version: Any = None,
    fields: Any = None,
) -> Callable[[ProcessFunction], ProcessFunction]:
    """Declares the function that processes one image.

        @processor(name="quality", version="1.0.0", fields={"sharpness": "number"})
        def process(image_bytes: bytes, info: dict) -> dict:
            return {"sharpness": 812.4}

    The function is returned unchanged (call it directly in tests); run()
    serves it. Raises ProcessorDefinitionError listing everything wrong with
    the arguments.
    """
    if _function is not None:
        raise ProcessorDefinitionError(
            "use the decorator with its arguments: @processor(name=..., version=..., fields={...})"
        )
    problems = []
    if not isinstance(name, str) or not NAME.match(name):
        problems.append(
            f"name {name!r} must match {NAME.pattern} "
            "(lowercase letters, digits, _ and -, starting with a letter, at most 63 characters)"
        )
    if not isinstance(version, str) or not version.strip():
        problems.append(f"version {version!r} must be a non-empty string, e.g. '1.0.0'")
    if fields is None:
        problems.append("fields is required: a dict of field name to type, e.g. {'sharpness': 'number'}")
    else:
        problems.extend(check_fields(fields))
    if problems:
        raise ProcessorDefinitionError(f"@processor(name={name!r}): " + "; ".join(problems))
    declared = dict(fields)

    def register(function: ProcessFunction) -> ProcessFunction:
        if not callable(function):
            raise ProcessorDefinitionError(f"@processor(name={name!r}) must decorate a function")
        try:
            inspect.signature(function).bind(b"", {})
        except TypeError:
            raise ProcessorDefinitionError(
                f"@processor(name={name!r}): {getattr(function, '__name__', function)!r} "
                "must take two arguments: (image_bytes: bytes, info: dict)"
            ) from None
        except ValueError:  # no signature to inspect (some builtins): let the call tell
            pass
        spec = Processor(name=name, version=version, fields=declared, function=function)
        _registered.append(spec)
        function.imagelake = spec  # type: ignore[attr-defined]
        return function

    return register


def get_processor(target: Any = None) -> Processor:
    """The processor to serve: target (a decorated function or a Processor), or
    the only one registered with @processor."""
    if isinstance(target, Processor):
        return target
    if target is not None:
        spec = getattr(target, "imagelake", None)
        if not isinstance(spec, Processor):
            raise ProcessorDefinitionError(f"{target!r} is not decorated with @processor(...)")
        return spec
    if not _registered:
        raise ProcessorDefinitionError(
            "no processor: decorate your function with @processor(...) before run()"
        )
    names = {spec.name for spec in _registered}
    if len(_registered) > 1 and len(names) > 1:
        listed = ", ".join(sorted(names))
        raise ProcessorDefinitionError(
            f"several processors are registered ({listed}); pass the one to serve: run(process)"
        )
    return _registered[-1]


@dataclass
class Outcome:
    """One call's response: ok with metadata, labels and images, or an error."""

    ok: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    labels: list[str] | None = None
    images: list[DerivedImage] = field(default_factory=list)
    error: dict[str, Any] | None = None

    @classmethod
    def failure(cls, code: str, message: str, retryable: bool = False) -> Outcome:
        error: dict[str, Any] = {"code": code, "message": message}
        if retryable:
            error["retryable"] = True
        return cls(ok=False, error=error)

    def body(self, image_entry: Callable[[DerivedImage], dict[str, Any]]) -> dict[str, Any]:
        """The JSON response, with each derived image described by image_entry."""
        if not self.ok:
            return {"ok": False, "error": dict(self.error or {})}
        body: dict[str, Any] = {"ok": True, "metadata": self.metadata}
        if self.labels is not None:
            body["labels"] = self.labels
        if self.images:
            body["images"] = [image_entry(image) for image in self.images]
        return body


def _plain(value: Any) -> Any:
    """json.dumps fallback: numpy scalars and arrays (anything with tolist())."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def to_json_bytes(value: Any) -> bytes:
    """Strict JSON in UTF-8: no NaN or Infinity, numpy values as plain numbers."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain)
    return text.encode("utf-8")


def _describe_exception(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _normalise_info(info: Any) -> dict[str, Any]:
    info = dict(info)
    for key in ("image", "metadata", "previous", "config"):
        if not isinstance(info.get(key), dict):
            info[key] = {}
    return info


def execute(spec: Processor, image_bytes: bytes, info: Mapping[str, Any]) -> Outcome:
    """Calls the processor once and turns what happens into an Outcome.

    ProcessorError becomes its code and message; any other exception becomes
    EXCEPTION with "TypeName: message" (its traceback goes to stderr). A result
    that JSON cannot carry (NaN, an object of another class) is an EXCEPTION too.
    """
    with process_span(spec.name, spec.version, info) as span:
        outcome = _execute(spec, image_bytes, info)
        if not outcome.ok:
            error = outcome.error or {}
            record_failure(span, str(error.get("code", "")), str(error.get("message", "")))
        return outcome


def _execute(spec: Processor, image_bytes: bytes, info: Mapping[str, Any]) -> Outcome:
    try:
        returned = spec.function(image_bytes, _normalise_info(info))
        if isinstance(returned, Result):
            outcome = Outcome(
                ok=True, metadata=returned.metadata, labels=returned.labels, images=returned.images
            )
        elif isinstance(returned, Mapping):
            outcome = Outcome(ok=True, metadata=returned)
        else:
            raise TypeError(
                f"process() must return a dict of fields or a Result, not {type(returned).__name__}"
            )
        # Round-trip through JSON now, so a value JSON cannot carry fails this image, not the protocol.
        outcome.metadata = json.loads(to_json_bytes(outcome.metadata))
        return outcome
    except ProcessorError as error:
        return Outcome.failure(error.code, error.message, error.retryable)
    except Exception as error:  # noqa: BLE001 - the point is to report any of them
        print(f"imagelake: {spec.name}: process() raised:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        return Outcome.failure("EXCEPTION", _describe_exception(error))
