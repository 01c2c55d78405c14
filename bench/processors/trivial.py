"""The trivial processor of bench/processors.ts, with the Python SDK: looks at nothing, answers
{"ok": true}.

    python bench/processors/trivial.py              the stdio protocol (a `command` processor)
    python bench/processors/trivial.py --http 0     the HTTP protocol on a free port
"""

from imagelake import processor, run


@processor(name="trivial", version="1.0.0", fields={"ok": "boolean"})
def process(image_bytes: bytes, info: dict) -> dict:
    return {"ok": True}


if __name__ == "__main__":
    run()
