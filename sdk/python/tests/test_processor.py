"""The decorator, Result and friends, execute() and validate(), in process."""

import json
import math
import re

import pytest
from imagelake import DerivedImage, ProcessorDefinitionError, ProcessorError, Result, processor, validate
from imagelake.core import Processor, execute, get_processor

ALL_TYPES = {
    "a": "string",
    "b": "integer",
    "c": "number",
    "d": "boolean",
    "e": "string[]",
    "f": "integer[]",
    "g": "number[]",
    "h": "boolean[]",
    "i": "object",
    "j": "number?",
    "k": "string[]?",
    "l": "object?",
}


def make(function=None, **overrides) -> Processor:
    arguments = {"name": "demo", "version": "1.0.0", "fields": {"size": "integer"}, **overrides}
    decorated = processor(**arguments)(function or (lambda image_bytes, info: {"size": len(image_bytes)}))
    return decorated.imagelake


def test_the_decorator_returns_the_function_unchanged_and_records_the_declaration():
    @processor(name="quality-2_b", version="2.1.0", fields=ALL_TYPES)
    def process(image_bytes: bytes, info: dict) -> dict:
        return {"a": "x"}

    assert process(b"", {}) == {"a": "x"}
    assert process.imagelake.hello() == {
        "imagelake": 1,
        "name": "quality-2_b",
        "version": "2.1.0",
        "fields": ALL_TYPES,
    }
    assert get_processor(process) is process.imagelake


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"name": "Quality"}, "name 'Quality' must match"),
        ({"name": "9lives"}, "must match"),
        ({"name": "a" * 64}, "must match"),
        ({"name": "has space"}, "must match"),
        ({"name": None}, "name None must match"),
        ({"version": ""}, "version '' must be a non-empty string"),
        ({"version": 1}, "version 1 must be a non-empty string"),
        ({"fields": None}, "fields is required"),
        ({"fields": ["sharpness"]}, "fields must be a dict"),
        ({"fields": {"x": "float"}}, "field 'x' has type 'float'"),
        ({"fields": {"x": "object[]"}}, "has type 'object[]'"),
        ({"fields": {"x": "number??"}}, "has type 'number??'"),
        ({"fields": {"x": "[]number"}}, "has type"),
        ({"fields": {"x": "Number"}}, "has type"),
        ({"fields": {"a.b": "number"}}, "field name 'a.b' must be an identifier"),
        ({"fields": {"-a": "number"}}, "field name '-a' must be an identifier"),
        ({"fields": {"a" * 65: "number"}}, "must be an identifier"),
        ({"fields": {"": "number"}}, "field name '' must be an identifier"),
    ],
)
def test_invalid_declarations_are_refused_with_a_clear_message(arguments, complaint):
    with pytest.raises(ProcessorDefinitionError, match=re.escape(complaint)):
        make(**arguments)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ProcessorDefinitionError) as caught:
        processor(name="Bad", version="", fields={"x": "float"})
    message = str(caught.value)
    assert "name 'Bad'" in message and "version ''" in message and "field 'x'" in message


def test_the_bare_decorator_and_wrong_signatures_are_explained():
    with pytest.raises(ProcessorDefinitionError, match="use the decorator with its arguments"):

        @processor
        def process(image_bytes, info):
            return {}

    with pytest.raises(ProcessorDefinitionError, match="must take two arguments"):
        processor(name="demo", version="1", fields={})(lambda image_bytes: {})
    # Extra optional parameters and *args are fine.
    processor(name="demo", version="1", fields={})(lambda image_bytes, info, extra=None: {})
    processor(name="demo", version="1", fields={})(lambda *args: {})


def test_get_processor_needs_a_decorated_function():
    with pytest.raises(ProcessorDefinitionError, match="not decorated"):
        get_processor(lambda image_bytes, info: {})


def test_a_dict_is_the_metadata():
    outcome = execute(make(), b"abcd", {"id": "r"})
    assert outcome.ok and outcome.metadata == {"size": 4}
    assert outcome.body(lambda image: {}) == {"ok": True, "metadata": {"size": 4}}


def test_a_result_carries_labels_and_images():
    def function(image_bytes, info):
        return Result(
            metadata={"size": 1},
            labels=("sharp", "bright"),
            images=[DerivedImage("edges", "png", bytearray(b"PNG")), DerivedImage("mask", "webp", b"W")],
        )

    outcome = execute(make(function), b"", {})
    assert outcome.labels == ["sharp", "bright"]
    assert [image.data for image in outcome.images] == [b"PNG", b"W"]
    assert outcome.body(lambda image: {"name": image.name}) == {
        "ok": True,
        "metadata": {"size": 1},
        "labels": ["sharp", "bright"],
        "images": [{"name": "edges"}, {"name": "mask"}],
    }


def test_info_always_has_its_four_parts():
    seen = {}

    def function(image_bytes, info):
        seen.update(info)
        return {}

    execute(make(function), b"", {"id": "r-1", "config": {"edges": True}})
    assert seen == {"id": "r-1", "image": {}, "metadata": {}, "previous": {}, "config": {"edges": True}}


def test_processor_error_keeps_its_code_and_message():
    def function(image_bytes, info):
        raise ProcessorError("NO_FACES", "No face was found.")

    outcome = execute(make(function), b"", {})
    assert outcome.body(lambda image: {}) == {
        "ok": False,
        "error": {"code": "NO_FACES", "message": "No face was found."},
    }
    assert ProcessorError("X").message == "X"
    with pytest.raises(TypeError):
        ProcessorError("")


def test_a_processor_error_is_not_retried_unless_it_says_so():
    def transient(image_bytes, info):
        raise ProcessorError("MODEL_DOWN", "The model server did not answer.", retryable=True)

    outcome = execute(make(transient), b"", {})
    assert outcome.body(lambda image: {}) == {
        "ok": False,
        "error": {"code": "MODEL_DOWN", "message": "The model server did not answer.", "retryable": True},
    }
    assert ProcessorError("X").retryable is False
    with pytest.raises(TypeError):
        ProcessorError("X", "message", retryable="yes")


def test_any_other_exception_is_EXCEPTION_with_its_type_and_message_and_a_traceback(capsys):
    def function(image_bytes, info):
        raise KeyError("width")

    outcome = execute(make(function), b"", {})
    assert outcome.error == {"code": "EXCEPTION", "message": "KeyError: 'width'"}
    stderr = capsys.readouterr().err
    assert "Traceback (most recent call last)" in stderr and "raise KeyError" in stderr

    outcome = execute(make(lambda image_bytes, info: 1 / 0), b"", {})
    assert outcome.error == {"code": "EXCEPTION", "message": "ZeroDivisionError: division by zero"}
    outcome = execute(make(lambda image_bytes, info: exec("raise RuntimeError")), b"", {})
    assert outcome.error == {"code": "EXCEPTION", "message": "RuntimeError"}


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (None, "TypeError: process() must return a dict of fields or a Result, not NoneType"),
        ([1, 2], "TypeError: process() must return a dict of fields or a Result, not list"),
        ({"size": math.nan}, "ValueError: Out of range float values are not JSON compliant"),
        ({"size": object()}, "TypeError: Object of type object is not JSON serializable"),
    ],
)
def test_results_json_cannot_carry_fail_the_image_only(returned, message, capsys):
    outcome = execute(make(lambda image_bytes, info: returned), b"", {})
    assert outcome.error["code"] == "EXCEPTION"
    assert outcome.error["message"].startswith(message)


def test_numpy_like_values_become_plain_json():
    class Scalar:
        def tolist(self):
            return 0.5

    outcome = execute(make(lambda image_bytes, info: {"size": Scalar(), "xs": (1, 2)}), b"", {})
    assert outcome.metadata == {"size": 0.5, "xs": [1, 2]}


def test_the_sdk_does_not_check_output_against_fields():
    outcome = execute(make(lambda image_bytes, info: {"undeclared": "yes"}), b"", {})
    assert outcome.ok and outcome.metadata == {"undeclared": "yes"}


@pytest.mark.parametrize(
    "build",
    [
        lambda: Result(metadata=[1]),
        lambda: Result(labels="sharp"),
        lambda: Result(labels=[1]),
        lambda: Result(images=[b"png"]),
        lambda: DerivedImage("", "png", b""),
        lambda: DerivedImage("edges", None, b""),
        lambda: DerivedImage("edges", "png", "not bytes"),
    ],
)
def test_result_and_derived_image_check_their_types(build):
    with pytest.raises(TypeError):
        build()


def test_validate_accepts_what_the_platform_accepts():
    metadata = {
        "a": "x",
        "b": 3,
        "c": 1.5,
        "d": False,
        "e": ["x"],
        "f": [1, 2.0],
        "g": [],
        "h": [True],
        "i": {"nested": [1]},
        "j": None,
    }
    assert validate(ALL_TYPES, metadata) == []
    assert validate({"b": "integer"}, {"b": 4.0}) == []
    assert validate({"b": "integer"}, {"b": 2**53 - 1}) == []
    assert validate({"face-count": "integer"}, {"face-count": 2}) == []
    assert validate({"x": "number?"}, {}) == []


@pytest.mark.parametrize(
    ("fields", "metadata", "complaint"),
    [
        ({"x": "number"}, {}, "field 'x' (number) is missing"),
        ({"x": "number"}, {"x": None}, "field 'x' (number) is null"),
        ({"x": "number"}, {"x": "1"}, "must be a number, not '1'"),
        ({"x": "number"}, {"x": True}, "must be a number"),
        ({"x": "number"}, {"x": math.inf}, "must be a finite number"),
        ({"x": "integer"}, {"x": 1.5}, "must be a whole number"),
        ({"x": "integer"}, {"x": 2**53}, "must be a whole number between"),
        ({"x": "boolean"}, {"x": 1}, "must be true or false"),
        ({"x": "string"}, {"x": "y" * 10_001}, "at most 10,000 characters"),
        ({"x": "string[]"}, {"x": "abc"}, "must be a list (string[])"),
        ({"x": "integer[]"}, {"x": [1, "2"]}, "item 1 is '2'"),
        ({"x": "number[]"}, {"x": [0] * 1001}, "at most 1,000 items"),
        ({"x": "object"}, {"x": []}, "must be an object"),
        ({}, {"y": 1}, "field 'y' is not declared"),
        ({}, [], "metadata must be an object"),
    ],
)
def test_validate_says_what_the_platform_would_refuse(fields, metadata, complaint):
    problems = validate(fields, metadata)
    assert len(problems) == 1, problems
    assert complaint in problems[0]


def test_validate_checks_labels_when_given():
    assert validate({}, {}, ["ok"]) == []
    assert "at most 100 are accepted" in validate({}, {}, ["x"] * 101)[0]
    assert "101 characters" in validate({}, {}, ["x" * 101])[0]
    assert "not a string" in validate({}, {}, [1])[0]
    assert "must not be empty" in validate({}, {}, [""])[0]


def test_json_of_an_outcome_is_strict():
    outcome = execute(make(lambda image_bytes, info: {"size": 2, "name": "é"}), b"", {})
    assert json.loads(json.dumps(outcome.body(lambda image: {}))) == {
        "ok": True,
        "metadata": {"size": 2, "name": "é"},
    }
