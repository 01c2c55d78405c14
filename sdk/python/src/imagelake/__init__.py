"""imagelake: write image processors in Python for the imagelake platform.

    from imagelake import processor, run

    @processor(name="quality", version="1.0.0", fields={"sharpness": "number"})
    def process(image_bytes: bytes, info: dict) -> dict:
        return {"sharpness": 812.4}

    if __name__ == "__main__":
        run()

See docs/processors.md in the imagelake repository for the protocols.
"""

from .cli import run
from .core import DerivedImage, Processor, ProcessorDefinitionError, ProcessorError, Result, processor
from .fields import validate
from .framing import FrameError, read_frame, write_frame

__version__ = "0.1.0"

__all__ = [
    "DerivedImage",
    "FrameError",
    "Processor",
    "ProcessorDefinitionError",
    "ProcessorError",
    "Result",
    "__version__",
    "processor",
    "read_frame",
    "run",
    "validate",
    "write_frame",
]
