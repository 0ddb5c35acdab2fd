"""The fenced code blocks of the seed documents (shared/seeds/), read as they are written.

A block is a fence line (```` ```lang ````, possibly indented, as in the model card's list
items), its lines and the closing fence at the same indentation; its code is dedented. Each
block records the ``###``/``##`` heading it falls under, so tests can pick blocks by section
and fail when the seed changes.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

# ../shared beside the clone, as for the other shared inputs (tests/gateway/test_open_webui_replay.py)
SEEDS = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"
README, MODEL_CARD = SEEDS / "llm-blender-readme.md", SEEDS / "pairrm-model-card.md"
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
_HEADING = re.compile(r"^#{2,4}\s+(?P<title>.+?)\s*$")


@dataclass(frozen=True)
class Block:
    document: str  # file name
    heading: str
    language: str
    line: int  # 1-based line of the opening fence
    code: str


def read_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    heading, k = "", 0
    while k < len(lines):
        title, fence = _HEADING.match(lines[k]), _FENCE.match(lines[k])
        if title:
            heading = title["title"]
        if fence:
            end = next(j for j in range(k + 1, len(lines))
                       if lines[j].strip() == "```" and lines[j].startswith(fence["indent"]))
            code = textwrap.dedent("\n".join(lines[k + 1:end])) + "\n"
            blocks.append(Block(path.name, heading, fence["lang"], k + 1, code))
            k = end
        k += 1
    return blocks


def python_blocks(path: Path, heading: str) -> list[Block]:
    """The python blocks under ``heading``, in document order; at least one."""
    found = [b for b in read_blocks(path) if b.language == "python" and b.heading == heading]
    if not found:
        raise LookupError(f"{path.name}: no python block under {heading!r}")
    return found
