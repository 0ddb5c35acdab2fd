"""Recognising a chat frontend's background tasks (title, tags, follow-up suggestions).

Open WebUI and LibreChat send these to the chat's own model, so on an ensemble each would
cost a whole fan-out and compete with the answer. An ensemble with ``tasks`` configured hands
them to one backend instead (``BlendEngine``); this module only decides what is a task.
"""

from __future__ import annotations

from ensemble.config import TaskRoutingConfig
from ensemble.types import BlendRequest


def is_background_task(request: BlendRequest, rule: TaskRoutingConfig) -> bool:
    """True when the request matches ``rule`` (last user message prefix, or small max_tokens)."""
    if rule.user_prefix:
        last_user = next((m for m in reversed(request.messages) if m.role == "user"), None)
        if last_user is not None and last_user.content.lstrip().startswith(rule.user_prefix):
            return True
    limit = rule.max_tokens_at_most
    max_tokens = request.params.max_tokens
    return limit is not None and max_tokens is not None and max_tokens <= limit
