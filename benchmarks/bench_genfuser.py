"""GenFuser serving: LLM-Blender's one-batch ``generate`` schedule vs blendgate's batched fuser.

    python benchmarks/bench_genfuser.py                      # Flan-T5-XL shape, CUDA, bf16
    python benchmarks/bench_genfuser.py --small              # reduced model, CPU sanity run

The model is a T5 with random weights and Flan-T5-XL's shape (d_model 2048, d_ff 5120, 32
heads, 24+24 layers, gated-GELU, vocab 32128) unless ``--small``. Every request generates
exactly ``--new-tokens`` tokens (``min_new_tokens`` is set to the same value) with the
original's decoding (4 beams), so both schedules do the same work. Requests are AlpacaEval
instructions with the answers of three models as candidates
(``shared/data/alpaca_eval/results/*/model_outputs.json.gz``), built with the exact fuser
template (candidates cut at 128 tokens, 1024-token window).

Token ids come from ``--tokenizer DIR`` (e.g. a local copy of ``llm-blender/gen_fuser_3b``) or,
offline, from a T5-style SentencePiece model trained here on the same texts.

Schedules, for C = 1, 8, 32 requests arriving at once:

- ``original``: ``Blender.fuse``: fixed chunks of 4 (its default ``batch_size``), one
  ``generate`` after the other; a request's latency is the end of its chunk;
- ``batched``: ``GenFuser.fuse`` called C times concurrently; the ``BatchWorker`` gathers
  them (up to ``--max-batch``) into one ``generate`` per batch.

Prints one line per (C, schedule): mean time to the first text (streamed with
``--num-beams 1``; equal to the latency otherwise), mean/p50/max latency and generated tokens/s
(``--json`` writes them).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
from bench_common import quantile
from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

from ensemble.compat.fusion import FuserSettings, fuse_batch
from ensemble.config import GenFuserConfig
from ensemble.fusers.genfuser import GenFuser
from ensemble.fusers.genfuser.model import LoadedFuser, load_fuser_tokenizer
from ensemble.types import ChatMessage, SamplingParams

_ROOT = Path(__file__).resolve().parents[1]
DATA = next((p for p in (_ROOT / "shared", _ROOT.parent / "shared") if p.is_dir()),
            _ROOT / "shared") / "data" / "alpaca_eval" / "results"
MODELS = ("gpt4_1106_preview", "tulu-2-dpo-70b", "zephyr-7b-beta")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
XL = {"d_model": 2048, "d_ff": 5120, "d_kv": 64, "num_heads": 32, "num_layers": 24,
      "num_decoder_layers": 24}
SMALL = {"d_model": 256, "d_ff": 640, "d_kv": 32, "num_heads": 8, "num_layers": 4,
         "num_decoder_layers": 4}

Request = tuple[str, list[str]]  # (input, candidates best first)


def load_requests(data: Path) -> list[Request]:
    answers: dict[str, list[str]] = {}
    for name in MODELS:
        with gzip.open(data / name / "model_outputs.json.gz") as file:
            rows = json.loads(file.read())
        for row in rows:
            answers.setdefault(row["instruction"], []).append(row["output"])
    return [(q, a) for q, a in answers.items() if len(a) == len(MODELS)]


def offline_tokenizer(texts: Sequence[str]) -> Any:
    """A T5-layout tokenizer (pad 0, eos 1, unk 2, 100 sentinels) trained on ``texts``."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buffer, vocab_size=8000,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
        hard_vocab_limit=False, input_sentence_size=20000, shuffle_input_sentence=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-genfuser-") as directory:
        (Path(directory) / "spiece.model").write_bytes(buffer.getvalue())
        return T5Tokenizer.from_pretrained(directory, extra_ids=100)


def build_model(shape: dict[str, int], dtype: torch.dtype, device: torch.device,
                new_tokens: int, tokenizer: Any) -> Any:
    config = T5Config(vocab_size=32128, feed_forward_proj="gated-gelu",
                      tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1, **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = T5ForConditionalGeneration(config).to(dtype).eval()
    model.generation_config.min_new_tokens = new_tokens  # same work for every schedule
    # Random weights would mostly pick ids past the tokenizer (32128 > its size), which decode
    # to nothing and would hide streaming; zeroed rows (logit 0) lose to the random text logits.
    with torch.no_grad():
        model.lm_head.weight[len(tokenizer) - 100:] = 0
        model.lm_head.weight[[tokenizer.pad_token_id, tokenizer.unk_token_id]] = 0
    return model


def _summary(schedule: str, concurrency: int, latencies: list[float], firsts: list[float],
             wall: float, tokens: int) -> dict[str, Any]:
    return {"schedule": schedule, "concurrency": concurrency,
            "first_text_mean_s": statistics.fmean(firsts),
            "latency_mean_s": statistics.fmean(latencies),
            "latency_p50_s": quantile(latencies, 0.5), "latency_max_s": max(latencies),
            "wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall}


def run_original(loaded: LoadedFuser, requests: Sequence[Request], new_tokens: int,
                 num_beams: int) -> dict[str, Any]:
    settings = FuserSettings()
    latencies: list[float] = []
    start = time.perf_counter()
    for first in range(0, len(requests), 4):
        chunk = requests[first:first + 4]
        fuse_batch(loaded, settings, [q for q, _ in chunk], [c for _, c in chunk],
                   batch_size=4, max_new_tokens=new_tokens, num_beams=num_beams)
        _sync(loaded.device)
        latencies.extend([time.perf_counter() - start] * len(chunk))
    wall = time.perf_counter() - start
    return _summary("original", len(requests), latencies, latencies, wall,
                    len(requests) * new_tokens)


async def run_batched(fuser: GenFuser, requests: Sequence[Request], new_tokens: int
                      ) -> dict[str, Any]:
    params = SamplingParams(max_tokens=new_tokens)
    start = time.perf_counter()

    async def one(question: str, candidates: list[str]) -> tuple[float, float]:
        stream = await fuser.fuse([ChatMessage("user", question)], candidates, params)
        first = 0.0
        async for delta in stream.deltas:
            if not first and delta.text:
                first = time.perf_counter() - start
        return first or time.perf_counter() - start, time.perf_counter() - start

    done = await asyncio.gather(*[one(q, c) for q, c in requests])
    wall = time.perf_counter() - start
    return _summary("batched", len(requests), [t for _, t in done], [f for f, _ in done], wall,
                    len(requests) * new_tokens)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    requests = load_requests(args.data)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[args.dtype or ("float32" if args.small else "bfloat16")]
    if args.tokenizer is not None:
        tokenizer = load_fuser_tokenizer(Path(args.tokenizer))  # as GenFuser loads it
    else:
        tokenizer = offline_tokenizer([t for q, a in requests for t in (q, *a)])
    model = build_model(SMALL if args.small else XL, dtype, device, args.new_tokens, tokenizer)
    loaded = LoadedFuser(model=model, tokenizer=tokenizer, device=device, dtype=dtype)
    cfg = GenFuserConfig(device=str(device), max_new_tokens=args.new_tokens,
                         num_beams=args.num_beams,
                         max_batch_size=args.max_batch, batch_wait_ms=args.wait_ms)
    fuser = GenFuser(loaded, cfg)
    records: list[dict[str, Any]] = []
    machine = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
               else platform.processor() or platform.machine(),
               "threads": torch.get_num_threads(), "dtype": str(dtype).removeprefix("torch."),
               "shape": "small" if args.small else "flan-t5-xl", "new_tokens": args.new_tokens,
               "num_beams": args.num_beams, "max_batch": args.max_batch}
    try:
        run_original(loaded, requests[:1], args.new_tokens, args.num_beams)  # warm-up
        for concurrency in args.concurrency:
            batch = requests[:concurrency]
            _reset_peak(device)
            original = run_original(loaded, batch, args.new_tokens, args.num_beams)
            original["peak_gpu_mib"] = _peak_mib(device)
            _reset_peak(device)
            batched = await run_batched(fuser, batch, args.new_tokens)
            batched["peak_gpu_mib"] = _peak_mib(device)
            for record in (original, batched):
                record.update(machine)
                records.append(record)
                print(f"C={concurrency:<3} {record['schedule']:<9} "
                      f"first text {record['first_text_mean_s']:7.2f}s "
                      f"latency mean {record['latency_mean_s']:7.2f}s "
                      f"p50 {record['latency_p50_s']:7.2f}s max {record['latency_max_s']:7.2f}s"
                      f"  {record['tokens_per_s']:8.1f} tok/s", flush=True)
            if args.json is not None:  # after every C: a run cut short keeps what it measured
                args.json.write_text(json.dumps(records, indent=2))
    finally:
        await fuser.aclose()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="reduced model (CPU sanity run)")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="default: bfloat16, float32 with --small")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--num-beams", type=int, default=4,
                        help="4 = the original's beam search; 1 = greedy (streamed)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--tokenizer", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    records = asyncio.run(bench(args))
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
