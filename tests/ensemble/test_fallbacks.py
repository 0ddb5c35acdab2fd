"""BlendReport.fuser wire strings for fallbacks stay exactly as clients and dashboards see them."""

from __future__ import annotations

from ensemble.fallbacks import Fallback


def test_fallback_labels_keep_their_wire_strings() -> None:
    assert Fallback.DEADLINE.label() == "none (deadline)"
    assert Fallback.TOOL_CALL.label() == "none (tool call)"
    assert Fallback.FORMAT_UNSUPPORTED.label(subject="genfuser") == (
        "none (genfuser cannot follow response_format)")
    assert Fallback.FORMAT_BROKEN.label("llm", subject="json_schema") == (
        "llm (invalid json_schema; best candidate)")


def test_a_fallback_is_its_reason_string() -> None:
    assert Fallback("deadline") is Fallback.DEADLINE
    assert f"{Fallback.TOOL_CALL}" == "tool call"
