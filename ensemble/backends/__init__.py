"""Backends: one ``Backend`` protocol (``base``), three implementations, one factory.

    OpenAICompatBackend   any OpenAI-compatible HTTP server      (backends.openai_compat)
    LlamaCppBackend       a GGUF model in-process via xllamacpp   (backends.llamacpp)
    TransformersBackend   an HF causal LM in-process             (backends.transformers_local)
    build_backend(s)      config -> backends, lazy imports        (backends.factory)

Import implementations from their modules; this package imports nothing heavy.
"""

from ensemble.backends.base import Backend
from ensemble.backends.factory import build_backend, build_backends

__all__ = ["Backend", "build_backend", "build_backends"]
