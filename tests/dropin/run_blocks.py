"""Run code blocks in one fresh namespace, as a reader pasting them into one Python session.

Usage: ``python -m tests.dropin.run_blocks SPEC.json OUT.json``. SPEC holds ``blocks`` (code
strings, run in order as ``__main__``) and ``names`` (one list per block: the variables to
report right after that block, since later blocks may rebind them). OUT is one dict per
block, each name's value made JSON-able by :func:`describe` (type, dtype, shape and values of
numpy arrays and torch tensors), plus ``stdout`` (what all blocks printed). The test process launches this with the
environment under test (``HF_HOME``, ``HF_HUB_OFFLINE``, ``PYTHONPATH``), which
huggingface_hub and transformers read once, at import.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any


def describe(value: Any) -> Any:
    """A JSON-able account of ``value`` (nested lists/tuples/dicts walked)."""
    kind = type(value)
    if kind.__module__ == "numpy" and kind.__name__ == "ndarray":
        return {"type": "ndarray", "dtype": str(value.dtype), "shape": list(value.shape),
                "value": value.tolist()}
    if kind.__module__.startswith("torch") and kind.__name__ == "Tensor":
        return {"type": "tensor", "dtype": str(value.dtype), "shape": list(value.shape),
                "device": str(value.device), "value": value.tolist()}
    if isinstance(value, list | tuple):
        return {"type": kind.__name__, "value": [describe(v) for v in value]}
    if isinstance(value, dict):
        return {"type": "dict", "value": {str(k): describe(v) for k, v in value.items()}}
    if isinstance(value, str | int | float | bool) or value is None:
        return {"type": kind.__name__, "value": value}
    return {"type": f"{kind.__module__}.{kind.__qualname__}", "value": repr(value)}


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    printed = io.StringIO()
    reports: list[dict[str, Any]] = []
    with contextlib.redirect_stdout(printed):
        for k, (code, names) in enumerate(zip(spec["blocks"], spec["names"], strict=True)):
            exec(compile(code, f"<block {k}>", "exec"), namespace)  # noqa: S102 - the point
            reports.append({name: describe(namespace[name]) for name in names})
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"blocks": reports, "stdout": printed.getvalue()}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
