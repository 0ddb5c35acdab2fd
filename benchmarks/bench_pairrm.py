"""PairRM ranking throughput: LLM-Blender's schedule vs blendgate's pooled, length-sorted pairs.

    python benchmarks/bench_pairrm.py                 # DeBERTa-v3-large shape, GPU, fp16 + bf16
    python benchmarks/bench_pairrm.py --small --device cpu --dtypes float32 --prompts 4

The model is a PairRM with random weights (timings do not depend on the weights) and the
real architecture (24 layers, hidden 1024, vocab 128005) unless ``--small``. Prompts and
candidates are AlpacaEval instructions with the answers of n different models
(``shared/data/alpaca_eval/results/*/model_outputs.json.gz``), n = 2, 5, 8.

Token ids come from ``--tokenizer DIR`` (a PairRM checkpoint directory, e.g. a local copy of
``llm-blender/PairRM-hf``) or, offline, from a SentencePiece model trained on the same texts
(8k pieces: sequences are somewhat longer than with DeBERTa-v3's 128k vocabulary).

Schedules, same prompts, same pair rows (per-example truncation 1224/412):

- ``original``: Blender.rank -> ``_full_predict``: per batch of ``--original-batch`` prompts
  (8, rank()'s default), one forward pass per ordered pair (i, j), i.e. n(n-1) passes of B rows;
- ``pooled``: every ordered pair of every prompt in one pool, sorted by length, run
  ``--max-batch-pairs`` rows at a time (``ensemble.rankers.pairrm.full_matrices``).

Prints one line per (dtype, n, schedule) and the pooled/original speed-up; ``--json`` writes
them. Memory: peak CUDA allocation, or the process's peak RSS on CPU. ``cpu_seconds`` (process
CPU time) is the steadier figure on a shared CPU host, where wall time includes waiting.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import platform
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import DebertaV2Config, DebertaV2Tokenizer

from ensemble.rankers.pairrm import PairRM, PairRMModel, PrefixIds, full_matrices
from ensemble.rankers.pairrm.checkpoint import load_tokenizer, resolve_dir
from ensemble.rankers.pairrm.inputs import PROMPT_TOKENS, length_sorted_batches, pad_rows
from ensemble.rankers.pairrm.scoring import encode_pair_rows

_ROOT = Path(__file__).resolve().parents[1]
DATA = next((p for p in (_ROOT / "shared", _ROOT.parent / "shared") if p.is_dir()),
            _ROOT / "shared") / "data" / "alpaca_eval" / "results"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_items(data: Path, n_max: int) -> list[tuple[str, list[str]]]:
    """(instruction, answers of n_max models) for every instruction all of them answered."""
    answers: dict[str, list[str]] = {}
    for path in sorted(data.glob("*/model_outputs.json.gz"))[:n_max]:
        with gzip.open(path) as handle:
            rows = json.loads(handle.read())
        for row in rows:
            answers.setdefault(row["instruction"], []).append(row["output"])
    return [(q, a) for q, a in answers.items() if len(a) == n_max]


def build_tokenizer(texts: Sequence[str], directory: Path):
    import sentencepiece as spm

    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(directory / "spm"), vocab_size=8000,
        character_coverage=0.9995, hard_vocab_limit=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]",
        bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]", minloglevel=2, num_threads=2,
    )
    tokenizer = DebertaV2Tokenizer.from_pretrained(str(directory))
    tokenizer.add_tokens(list(PROMPT_TOKENS))
    return tokenizer


def build_pairrm(tokenizer, small: bool, device: str, dtype: torch.dtype, batch: int) -> PairRM:
    size = ({"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
             "intermediate_size": 1024} if small else
            {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
             "intermediate_size": 4096})
    config = DebertaV2Config(
        vocab_size=len(tokenizer) if small else 128005, max_relative_positions=-1,
        position_buckets=256, relative_attention=True, pos_att_type=["p2c", "c2p"],
        share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
        type_vocab_size=0, layer_norm_eps=1e-7, pad_token_id=0, **size,
    )
    torch.manual_seed(0)
    mask = tokenizer.mask_token_id
    model = PairRMModel(config, PrefixIds.after_mask(mask)).to(device=device, dtype=dtype).eval()
    return PairRM(model=model, tokenizer=tokenizer, max_batch_pairs=batch)


def original_schedule(
    pairrm: PairRM, items: Sequence[tuple[str, list[str]]], batch: int, source_max: int,
    candidate_max: int,
) -> list[np.ndarray]:
    """Blender.rank's loop: per prompt batch, one forward of B rows per ordered pair."""
    out = []
    device = pairrm.device
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        n = len(chunk[0][1])
        m = np.zeros((len(chunk), n, n), dtype=np.float32)
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                triples = [(q, c[i], c[j]) for q, c in chunk]
                rows = encode_pair_rows(pairrm, triples, source_max, candidate_max)
                ids, attn = pad_rows(rows, pairrm.tokenizer.pad_token_id)
                with torch.inference_mode():
                    m[:, i, j] = pairrm.model(ids.to(device), attn.to(device)).float().cpu().numpy()
        out.extend(m)
    return out


def padded_tokens(
    pairrm: PairRM, items: Sequence[tuple[str, list[str]]], original_batch: int,
    max_batch_pairs: int, source_max: int, candidate_max: int,
) -> dict[str, int]:
    """Real tokens and padded tokens each schedule feeds the encoder (no forward pass)."""
    triples = [(q, c[i], c[j]) for q, c in items
               for i in range(len(c)) for j in range(len(c)) if i != j]
    lengths = [len(r) for r in encode_pair_rows(pairrm, triples, source_max, candidate_max)]
    pooled = sum(len(chunk) * lengths[chunk[0]]
                 for chunk in length_sorted_batches(lengths, max_batch_pairs))
    n, original, per_item = len(items[0][1]), 0, len(lengths) // len(items)
    for start in range(0, len(items), original_batch):
        stop = min(start + original_batch, len(items))
        for pair in range(n * (n - 1)):  # one pass per ordered pair over the prompt batch
            original += (stop - start) * max(lengths[b * per_item + pair] for b in range(start, stop))
    return {"real": sum(lengths), "original": original, "pooled": pooled}


def measure(fn, device: str) -> tuple[float, float, float, object]:
    """(wall seconds, process CPU seconds, peak memory MiB, result) of ``fn()``."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        memory = torch.cuda.max_memory_allocated() / 2**20
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    return time.perf_counter() - start, time.process_time() - cpu_start, memory, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="4 layers, hidden 256 (CPU sanity run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES))
    parser.add_argument("--n", nargs="+", type=int, default=[2, 5, 8])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--original-batch", type=int, default=8)
    parser.add_argument("--max-batch-pairs", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--source-max-length", type=int, default=1224)
    parser.add_argument("--candidate-max-length", type=int, default=412,
                        help="lower both limits for CPU sanity runs (e.g. 224/144: 512 tokens)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="PairRM checkpoint dir")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--count-only", action="store_true",
                        help="only count real vs padded tokens per schedule (no forward passes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = args.dtypes or (["float16", "bfloat16"] if args.device.startswith("cuda") else ["float32"])

    corpus = load_items(args.data, max(args.n))
    items_all = corpus[: args.prompts]
    with tempfile.TemporaryDirectory() as tmp:
        if args.tokenizer is not None:
            tokenizer, _ = load_tokenizer(resolve_dir(str(args.tokenizer)))
        else:
            tokenizer = build_tokenizer([t for q, a in corpus[:300] for t in (q, *a)], Path(tmp))
    machine = (torch.cuda.get_device_name() if args.device.startswith("cuda")
               else f"{platform.processor() or platform.machine()} CPU, {args.threads} thread(s)")
    print(f"# {machine}; {'small' if args.small else 'deberta-v3-large'} PairRM, random weights; "
          f"{len(items_all)} prompts; limits {args.source_max_length}/{args.candidate_max_length}; "
          f"torch {torch.__version__}")
    records = []
    for dtype_name in dtypes:
        pairrm = build_pairrm(tokenizer, args.small, args.device, DTYPES[dtype_name], args.max_batch_pairs)
        for n in args.n:
            items = [(q, a[:n]) for q, a in items_all]
            pairs = len(items) * n * (n - 1)
            limits = {"source_max_length": args.source_max_length,
                      "candidate_max_length": args.candidate_max_length}
            tokens = padded_tokens(pairrm, items, args.original_batch, args.max_batch_pairs,
                                   *limits.values())
            print(f"  n={n}: tokens real {tokens['real']}, padded original {tokens['original']} "
                  f"({tokens['real'] / tokens['original']:.0%} real), padded pooled "
                  f"{tokens['pooled']} ({tokens['real'] / tokens['pooled']:.0%} real)")
            records.append({"dtype": dtype_name, "n": n, "tokens": tokens})
            if args.count_only:
                continue
            pooled_fn = functools.partial(
                full_matrices, pairrm, [q for q, _ in items], [a for _, a in items], **limits)
            original_fn = functools.partial(
                original_schedule, pairrm, items, args.original_batch, *limits.values())
            pooled_fn() if n == args.n[0] else None  # warm-up (kernels, allocator)
            timings = {}
            for name, fn in (("original", original_fn), ("pooled", pooled_fn)):
                seconds, cpu_seconds, memory, result = measure(fn, args.device)
                timings[name] = (seconds, cpu_seconds, result)
                record = {"dtype": dtype_name, "n": n, "schedule": name, "pairs": pairs,
                          "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3),
                          "pairs_per_s": round(pairs / seconds, 2),
                          "ms_per_request": round(1000 * seconds / len(items), 1),
                          "memory_mib": round(memory, 1), "machine": machine}
                records.append(record)
                print(json.dumps(record))
            diff = max(float(np.abs(a - b).max())
                       for a, b in zip(timings["original"][2], timings["pooled"][2]))
            speedup = timings["original"][0] / timings["pooled"][0]
            cpu_speedup = timings["original"][1] / timings["pooled"][1]
            print(f"  {dtype_name} n={n}: pooled/original speed-up x{speedup:.2f} (wall), "
                  f"x{cpu_speedup:.2f} (CPU time); max |logit difference| {diff:.2e}")
            records.append({"dtype": dtype_name, "n": n, "speedup": round(speedup, 2),
                            "cpu_speedup": round(cpu_speedup, 2), "max_abs_diff": diff})
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
