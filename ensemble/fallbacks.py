"""Why an ensemble's answer did not come from its fuser, as ``BlendReport.fuser`` says it.

The report's ``fuser`` is part of the response (``blendgate.fuser``) and of dashboards, so the
wire strings are fixed: ``<fuser> (<reason>)``, e.g. ``none (deadline)`` or
``llm (invalid json_schema; best candidate)``.
"""

from __future__ import annotations

from enum import StrEnum


class Fallback(StrEnum):
    """The reasons; a value with ``{subject}`` names the fuser type or the response format."""

    DEADLINE = "deadline"  # on_deadline: best_candidate answered
    TOOL_CALL = "tool call"  # a member's tool call answered
    FORMAT_UNSUPPORTED = "{subject} cannot follow response_format"  # subject: the fuser type
    FORMAT_BROKEN = "invalid {subject}; best candidate"  # subject: response_format's type

    def label(self, fuser: str = "none", subject: str = "") -> str:
        """``BlendReport.fuser`` when ``fuser`` produced the text for this reason."""
        return f"{fuser} ({self.value.format(subject=subject)})"
