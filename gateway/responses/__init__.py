"""The Responses API (``POST /v1/responses``), text and function-tool subset, over chat.

A Responses request becomes a ``ChatCompletionRequest`` (``to_chat_request``) and is served by
the same engine path as chat completions, pass-through models and ensembles alike; the
result is framed as a ``response`` object, or as the streamed events ``response.created``,
``response.output_item.added``, ``response.output_text.delta`` ... ``response.completed``.

Served: ``input`` as a string or a list of messages (text parts), ``function_call`` and
``function_call_output`` items; ``instructions``; function ``tools`` and ``tool_choice``;
``text.format`` (text, json_object, json_schema); ``max_output_tokens``, ``temperature``,
``top_p``; ``stream``. Not served (400): ``previous_response_id`` and ``conversation`` (no
state is stored), built-in tools (web search, file search, ...), non-text inputs.

Reference: https://platform.openai.com/docs/api-reference/responses

Modules, as vLLM lays out an endpoint: ``protocol`` (the wire models), ``convert`` (a
Responses request to a chat request, an engine result to a ``response`` object),
``streaming`` (engine events to the Responses event sequence) and ``router`` (the route).
"""
