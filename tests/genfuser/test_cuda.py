"""GenFuser on CUDA: fp32 logits equal the CPU's; bf16 greedy decoding runs and streams.

Marked ``gpu``: skipped without CUDA (``BLENDGATE_GPU_TEST_DEVICE=cpu`` dry-runs them on the
CPU). The tests are synchronous (``asyncio.run``), so a GPU host needs no pytest-asyncio.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from ensemble.compat.fusion import FuserSettings, fuse_batch
from ensemble.config import GenFuserConfig
from ensemble.fusers.genfuser import GenFuser
from ensemble.fusers.genfuser.model import load_fuser
from ensemble.fusers.genfuser.prompt import encode_input
from ensemble.types import ChatMessage, SamplingParams, TextDelta

pytestmark = pytest.mark.gpu

QUESTION = "How do I keep basil fresh for a week?"
CANDIDATES = ["Put the stems in a glass of water on the counter.",
              "Wrap it in a damp paper towel and refrigerate it.",
              "Freeze the leaves in olive oil in an ice-cube tray."]


def _teacher_forced_logits(directory: Path, device: str) -> torch.Tensor:
    """Decoder logits [1, T, V] for the fuser prompt and a fixed 12-token decoder input."""
    loaded = load_fuser(str(directory), device=device, dtype="float32")
    prompt = encode_input(loaded.tokenizer, "", QUESTION, CANDIDATES)
    ids = torch.tensor([prompt.input_ids], device=loaded.device)
    target = loaded.tokenizer(CANDIDATES[1], add_special_tokens=False).input_ids[:11]
    decoder = torch.tensor([[0, *target]], device=loaded.device)  # start token, then text
    with torch.inference_mode():
        out = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                           decoder_input_ids=decoder)
    return out.logits.float().cpu()


def test_fp32_logits_on_the_gpu_equal_the_cpu(tiny_fuser_dir: Path, gpu_device: str) -> None:
    cpu = _teacher_forced_logits(tiny_fuser_dir, "cpu")
    gpu = _teacher_forced_logits(tiny_fuser_dir, gpu_device)
    assert cpu.shape[1] == 12 and cpu.abs().max() > 1.0
    assert (gpu - cpu).abs().max().item() <= 1e-4 * max(1.0, cpu.abs().max().item())


async def _fuse_streamed(fuser: GenFuser, max_tokens: int) -> list[TextDelta]:
    stream = await fuser.fuse([ChatMessage("user", QUESTION)], CANDIDATES,
                              SamplingParams(max_tokens=max_tokens))
    return [delta async for delta in stream.deltas]


def test_bf16_greedy_decoding_streams_on_the_gpu(tiny_fuser_dir: Path, gpu_device: str) -> None:
    cfg = GenFuserConfig(checkpoint=str(tiny_fuser_dir), device=gpu_device, dtype="bfloat16",
                         num_beams=1)

    async def run() -> tuple[list[TextDelta], list[str], torch.dtype, torch.device]:
        fuser = await GenFuser.load(cfg)
        try:
            deltas = await _fuse_streamed(fuser, 32)
            unstreamed = fuse_batch(fuser.loaded, FuserSettings(), [QUESTION], [CANDIDATES],
                                    num_beams=1, max_new_tokens=32)
            parameter = next(fuser.loaded.model.parameters())
            return deltas, unstreamed, parameter.dtype, parameter.device
        finally:
            await fuser.aclose()

    deltas, unstreamed, dtype, device = asyncio.run(run())
    assert dtype == torch.bfloat16 and device.type == torch.device(gpu_device).type
    assert len(deltas) > 3  # token by token, not one block
    assert "".join(d.text for d in deltas) == unstreamed[0] != ""
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert deltas[-1].finish_reason in ("stop", "length") and deltas[-1].usage is not None


def test_bf16_beam_search_answers_on_the_gpu(tiny_fuser_dir: Path, gpu_device: str) -> None:
    cfg = GenFuserConfig(checkpoint=str(tiny_fuser_dir), device=gpu_device, dtype="bfloat16")

    async def run() -> list[TextDelta]:
        fuser = await GenFuser.load(cfg)
        try:
            return await _fuse_streamed(fuser, 16)
        finally:
            await fuser.aclose()

    deltas = asyncio.run(run())
    assert len(deltas) == 1 and deltas[0].text != ""  # the original's 4 beams: one block
    assert deltas[0].usage is not None and 1 <= deltas[0].usage.completion_tokens <= 16
