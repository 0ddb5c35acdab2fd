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

Encoder variants of the pooled schedule (``--variants``; the original always runs transformers'
eager attention, as LLM-Blender does):

- ``eager``: transformers' ``DisentangledSelfAttention``;
- ``sdpa``: blendgate's ``SdpaDisentangledSelfAttention`` (the product default);
- ``sdpa+compile``: the same under ``torch.compile(dynamic=True)`` (compiled in the warm-up);
- ``disentangled-flash``: PyPI ``disentangled-flash`` (``optimize_deberta(inference=False)``,
  any row length: backend "auto", i.e. its Triton kernels, on CUDA; its "torch" path elsewhere),
  if installed;
- ``flashdeberta``: PyPI ``flashdeberta`` (Triton flash attention with the c2p/p2c terms): every
  layer's self-attention becomes its ``FlashDisentangledSelfAttention`` with the same weights;
  CUDA only (it imports Triton), if installed.

A variant that is not installed is skipped; one that fails to build or run is reported with its
error and the others go on (one GPU session has no time for a rerun).

Each variant's logits are compared with the original's (max |difference|, and the largest
|logit| for scale) and so are its per-prompt ranks (how many prompts rank identically). With
random weights the 24-layer encoder scores every candidate almost alike (logits of about 1e-2
whatever the text: redrawing the weights larger makes it worse, not better), so rank identity
here is decided by rounding noise and says little; the relative logit difference is the check.
Whether fp16/bf16 keep the ranks is asserted by ``tests/pairrm/test_cuda.py`` on a small model
whose candidates do differ. Achieved encoder TFLOP/s counts the matmul work of the padded
tokens fed (projections, FFN, attention, c2p/p2c); ``--peak-tflops`` turns it into a percentage
(default on H100/H200: 790, the dense bf16 rate an 8192-cube matrix product reached on this
workplace's H200; the datasheet says 989).

``--profile DIR`` runs one pooled pass of the last n under ``torch.profiler`` per dtype and
variant and writes the kernel table and a summary (GPU busy fraction, share of time in GEMMs and
attention kernels), which says whether the encoder is bound by its kernels or by launches.

Prints one line per (dtype, n, schedule) and the pooled/original speed-up; ``--json`` writes
them. Memory: peak CUDA allocation, or the process's peak RSS during the run on CPU. ``cpu_seconds`` (process
CPU time) is the steadier figure on a shared CPU host, where wall time includes waiting.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gzip
import json
import platform
import re
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import DebertaV2Config, DebertaV2Tokenizer

from ensemble.checkpoints import resolve_dir
from ensemble.rankers.pairrm import (
    PairRM,
    PairRMModel,
    PrefixIds,
    full_matrices,
    ranks_from_scores,
    scores_from_matrix,
)
from ensemble.rankers.pairrm.attention import set_attention
from ensemble.rankers.pairrm.checkpoint import load_tokenizer
from ensemble.rankers.pairrm.inputs import PROMPT_TOKENS, length_sorted_batches, pad_rows
from ensemble.rankers.pairrm.scoring import DEFAULT_MAX_BATCH_TOKENS, encode_pair_rows

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


def build_pairrm(tokenizer, small: bool, device: str, dtype: torch.dtype, batch: int,
                 layers: int | None = None, batch_tokens: int | None = None) -> PairRM:
    size = ({"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
             "intermediate_size": 1024} if small else
            {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
             "intermediate_size": 4096})
    if layers is not None:  # same layer shape, fewer layers: a CPU-sized slice of the real model
        size["num_hidden_layers"] = layers
    config = DebertaV2Config(
        vocab_size=len(tokenizer) if small else 128005, max_relative_positions=-1,
        position_buckets=256, relative_attention=True, pos_att_type=["p2c", "c2p"],
        share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
        type_vocab_size=0, layer_norm_eps=1e-7, pad_token_id=0, **size,
    )
    torch.manual_seed(0)
    mask = tokenizer.mask_token_id
    model = PairRMModel(config, PrefixIds.after_mask(mask), attention="eager")
    model = model.to(device=device, dtype=dtype).eval()
    return PairRM(model=model, tokenizer=tokenizer, max_batch_pairs=batch,
                  max_batch_tokens=batch_tokens)


VARIANTS = ("eager", "sdpa", "sdpa+compile", "disentangled-flash", "flashdeberta")
# Dense bf16 rate reached by an 8192^3 matmul on this workplace's H200 (device/KINDS.md); the
# datasheet peak of both H100 and H200 SXM is 989.
HOPPER_MEASURED_TFLOPS = 790.0


def build_variant(base: PairRM, name: str) -> tuple[PairRM, str] | None:
    """A copy of ``base`` (eager) with the encoder variant ``name``; None if not installed."""
    model = copy.deepcopy(base.model)
    label = name
    if name in ("sdpa", "sdpa+compile"):
        set_attention(model.pretrained_model, "sdpa")
        if name == "sdpa+compile":
            model.pretrained_model.compile(dynamic=True)
    elif name == "disentangled-flash":
        try:
            from disentangled_flash import optimize_deberta
        except ImportError:
            return None
        # "auto" keeps transformers' encoder off CUDA; ask for the PyTorch path there instead.
        on_cuda = next(model.parameters()).is_cuda
        optimize_deberta(model.pretrained_model, backend="auto" if on_cuda else "torch",
                         inference=False)
        label = f"{name}({getattr(model.pretrained_model.encoder, 'backend', 'unchanged')})"
    elif name == "flashdeberta":
        try:
            from flashdeberta.model import FlashDisentangledSelfAttention
        except ImportError:
            return None
        for layer in model.pretrained_model.encoder.layer:
            old = layer.attention.self
            new = FlashDisentangledSelfAttention(model.pretrained_model.config)
            new.load_state_dict(old.state_dict())
            layer.attention.self = new.to(device=next(old.parameters()).device,
                                           dtype=next(old.parameters()).dtype)
    elif name != "eager":
        raise ValueError(f"unknown variant {name!r}; choose from {VARIANTS}")
    return PairRM(model=model.eval(), tokenizer=base.tokenizer,
                  max_batch_pairs=base.max_batch_pairs,
                  max_batch_tokens=base.max_batch_tokens), label


def encoder_flops(config: DebertaV2Config, lengths: Sequence[int]) -> float:
    """Matmul FLOPs of the encoder over rows of the given padded lengths (2 per multiply-add)."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    span = 2 * (config.position_buckets if config.position_buckets > 0
                else config.max_position_embeddings)
    total = 0.0
    for width in lengths:
        dense = 2 * width * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
        attention = 2 * 2 * width * width * hidden  # q.k and p.v
        position = 2 * 2 * width * span * hidden  # c2p and p2c against 2S positions
        total += layers * (dense + attention + position)
    return total


def row_lengths(pairrm: PairRM, items: Sequence[tuple[str, list[str]]], source_max: int,
                candidate_max: int) -> list[int]:
    """Unpadded length of every ordered-pair row, item by item, pairs in row-major order."""
    triples = [(q, c[i], c[j]) for q, c in items
               for i in range(len(c)) for j in range(len(c)) if i != j]
    return [len(r) for r in encode_pair_rows(pairrm, triples, source_max, candidate_max)]


def pooled_widths(pairrm: PairRM, lengths: Sequence[int], max_batch_pairs: int) -> list[int]:
    """The padded width of every row the pooled schedule feeds."""
    batches = length_sorted_batches(lengths, max_batch_pairs, pairrm.max_batch_tokens)
    return [lengths[chunk[0]] for chunk in batches for _ in chunk]


def same_rank_count(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> int:
    """How many prompts rank their candidates identically under both sets of matrices."""
    return sum(np.array_equal(ranks_from_scores(scores_from_matrix(x)),
                              ranks_from_scores(scores_from_matrix(y))) for x, y in zip(a, b, strict=False))


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


def padded_tokens(lengths: Sequence[int], pooled: Sequence[int], n: int, n_items: int,
                  original_batch: int) -> dict[str, int]:
    """Real tokens, and padded tokens fed by the original schedule and by the pool."""
    original, per_item = 0, len(lengths) // n_items
    for start in range(0, n_items, original_batch):
        stop = min(start + original_batch, n_items)
        for pair in range(n * (n - 1)):  # one pass per ordered pair over the prompt batch
            original += (stop - start) * max(lengths[b * per_item + pair] for b in range(start, stop))
    return {"real": sum(lengths), "original": original, "pooled": sum(pooled)}


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # lifetime peak, KiB


GEMM_KERNELS = ("gemm", "sm90_xmma", "cutlass", "matmul", "addmm", "mm_")
ATTENTION_KERNELS = ("flash", "fmha", "attention", "softmax", "_attn", "sdpa")


def profile_once(fn, device: str, path: Path) -> dict[str, object]:
    """Run ``fn`` under torch.profiler; write the kernel table to ``path``; return a summary."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    wall_us = (time.perf_counter() - start) * 1e6
    events = prof.key_averages()
    sort_key = "self_device_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    path.write_text(events.table(sort_by=sort_key, row_limit=30), encoding="utf-8")
    if not device.startswith("cuda"):
        return {"profile": str(path)}
    kernels = [e for e in events if getattr(e, "device_type", None) is not None
               and str(e.device_type).endswith("CUDA") and e.self_device_time_total > 0]
    busy = sum(e.self_device_time_total for e in kernels)

    def share(words: Sequence[str]) -> float:
        part = sum(e.self_device_time_total for e in kernels
                   if any(w in e.key.lower() for w in words))
        return round(part / busy, 3) if busy else 0.0

    return {"profile": str(path), "gpu_busy_fraction": round(busy / wall_us, 3),
            "gemm_share": share(GEMM_KERNELS), "attention_share": share(ATTENTION_KERNELS),
            "kernel_launches": int(sum(e.count for e in kernels))}


def measure(fn, device: str) -> tuple[float, float, float, object]:
    """(wall seconds, process CPU seconds, peak memory MiB, result) of ``fn()``."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        _reset_peak_rss()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        memory = torch.cuda.max_memory_allocated() / 2**20
    else:
        memory = _peak_rss_mib()
    return time.perf_counter() - start, time.process_time() - cpu_start, memory, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="4 layers, hidden 256 (CPU sanity run)")
    parser.add_argument("--layers", type=int, default=None,
                        help="override the number of encoder layers (e.g. 2 for a CPU run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES))
    parser.add_argument("--n", nargs="+", type=int, default=[2, 5, 8])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--original-batch", type=int, default=8)
    parser.add_argument("--max-batch-pairs", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=DEFAULT_MAX_BATCH_TOKENS,
                        help="padded tokens per pooled forward pass (0: no cap)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--source-max-length", type=int, default=1224)
    parser.add_argument("--candidate-max-length", type=int, default=412,
                        help="lower both limits for CPU sanity runs (e.g. 224/144: 512 tokens)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="PairRM checkpoint dir")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--variants", nargs="+", default=["eager", "sdpa"], choices=VARIANTS,
                        help="encoder variants of the pooled schedule")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense rate for the dtype (default: 790 on H100/H200)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="directory for one profiled pooled pass per dtype and variant")
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
    shape = "small" if args.small else "deberta-v3-large"
    if args.layers is not None:
        shape += f" shape with {args.layers} layers"
    print(f"# {machine}; {shape} PairRM, random weights; "
          f"{len(items_all)} prompts; limits {args.source_max_length}/{args.candidate_max_length}; "
          f"torch {torch.__version__}")
    peak = args.peak_tflops
    if peak is None and args.device.startswith("cuda") and ("H100" in machine or "H200" in machine):
        peak = HOPPER_MEASURED_TFLOPS
    records: list[dict[str, object]] = []
    for dtype_name in dtypes:
        pairrm = build_pairrm(tokenizer, args.small, args.device, DTYPES[dtype_name],
                              args.max_batch_pairs, args.layers, args.max_batch_tokens or None)
        variants = {}
        for name in args.variants:
            try:
                built = build_variant(pairrm, name)
            except Exception as exc:  # noqa: BLE001 - report it and bench the others
                print(f"  variant {name}: failed to build: {exc!r}")
                records.append({"dtype": dtype_name, "variant": name, "error": repr(exc)})
                continue
            if built is None:
                print(f"  variant {name}: not installed, skipped")
            else:
                variants[built[1]] = built[0]
        limits = {"source_max_length": args.source_max_length,
                  "candidate_max_length": args.candidate_max_length}
        for n in args.n:
            items = [(q, a[:n]) for q, a in items_all]
            pairs = len(items) * n * (n - 1)
            lengths = row_lengths(pairrm, items, *limits.values())
            widths = pooled_widths(pairrm, lengths, args.max_batch_pairs)
            tokens = padded_tokens(lengths, widths, n, len(items), args.original_batch)
            print(f"  n={n}: tokens real {tokens['real']}, padded original {tokens['original']} "
                  f"({tokens['real'] / tokens['original']:.0%} real), padded pooled "
                  f"{tokens['pooled']} ({tokens['real'] / tokens['pooled']:.0%} real)")
            records.append({"dtype": dtype_name, "n": n, "tokens": tokens})
            if args.count_only:
                continue
            flops = encoder_flops(pairrm.model.config, widths)
            runs = {"original": functools.partial(
                original_schedule, pairrm, items, args.original_batch, *limits.values())}
            for label, variant in variants.items():
                runs[label] = functools.partial(
                    full_matrices, variant, [q for q, _ in items], [a for _, a in items], **limits)
            if n == args.n[0]:  # warm-up: kernels, allocator, and compiling the compiled variant
                for label, fn in list(runs.items()):
                    if label != "original":
                        warm_start = time.perf_counter()
                        try:
                            fn()
                        except Exception as exc:  # noqa: BLE001 - drop it, bench the others
                            print(f"  warm-up {label}: failed: {exc!r}")
                            records.append({"dtype": dtype_name, "variant": label,
                                            "error": repr(exc)})
                            del runs[label], variants[label]
                            continue
                        print(f"  warm-up {label}: {time.perf_counter() - warm_start:.1f} s")
            results = {}
            for label, fn in runs.items():
                try:
                    seconds, cpu_seconds, memory, result = measure(fn, args.device)
                except Exception as exc:  # noqa: BLE001 - e.g. out of memory in one variant
                    print(f"  {dtype_name} n={n} {label}: failed: {exc!r}")
                    records.append({"dtype": dtype_name, "n": n, "schedule": label,
                                    "error": repr(exc)})
                    if label == "original":
                        break
                    continue
                results[label] = (seconds, cpu_seconds, result)
                record: dict[str, object] = {
                    "dtype": dtype_name, "n": n, "schedule": label, "pairs": pairs,
                    "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3),
                    "pairs_per_s": round(pairs / seconds, 2),
                    "ms_per_request": round(1000 * seconds / len(items), 1),
                    "memory_mib": round(memory, 1), "machine": machine}
                if label != "original":
                    tflops = flops / seconds / 1e12
                    record["encoder_tflops"] = round(tflops, 4)
                    if peak:
                        record["percent_of_peak"] = round(100 * tflops / peak, 1)
                records.append(record)
                print(json.dumps(record))
            if "original" not in results:
                continue
            original_seconds, original_cpu, original_result = results.pop("original")
            scale = max(float(np.abs(m).max()) for m in original_result)
            for label, (seconds, cpu_seconds, result) in results.items():
                diff = max(float(np.abs(a - b).max()) for a, b in zip(original_result, result, strict=False))
                same = same_rank_count(original_result, result)
                summary = {"dtype": dtype_name, "n": n, "variant": label,
                           "speedup": round(original_seconds / seconds, 2),
                           "cpu_speedup": round(original_cpu / cpu_seconds, 2),
                           "max_abs_diff": diff, "max_abs_logit": scale,
                           "relative_diff": diff / scale if scale else None,
                           "prompts_same_ranks": same, "prompts": len(items),
                           "same_ranks": same == len(items)}
                print(f"  {dtype_name} n={n} {label}: x{summary['speedup']:.2f} wall, "
                      f"x{summary['cpu_speedup']:.2f} CPU time vs original; max |logit "
                      f"difference| {diff:.2e} (largest |logit| {scale:.2e}); prompts ranked "
                      f"identically: {same}/{len(items)}")
                records.append(summary)
            if args.profile is not None and n == args.n[-1]:
                args.profile.mkdir(parents=True, exist_ok=True)
                for label in results:
                    path = args.profile / re.sub(r"[^A-Za-z0-9._-]+", "-", f"pairrm-{dtype_name}-{label}.txt")
                    try:
                        found = profile_once(runs[label], args.device, path)
                    except Exception as exc:  # noqa: BLE001 - the timings above still stand
                        found = {"error": repr(exc)}
                    found.update({"dtype": dtype_name, "n": n, "profiled": label})
                    print(json.dumps(found))
                    records.append(found)
            if args.json is not None:  # after every n: a run cut short keeps what it measured
                args.json.write_text(json.dumps(records, indent=2), encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
