"""Prompt sets and human-labelled pair sets, read where they lie (never copied).

Named sets are looked up under the data directory: ``--data-dir``, else ``$BLENDGATE_EVAL_DATA``,
else ``../shared/data`` relative to the working directory (the layout of this project's
checkouts, where ``shared/`` sits next to the repository).
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ensemble.errors import ConfigError
from ensemble.experiments.split import unit_hash
from ensemble.types import ChatMessage

PROMPT_SETS = ("alpaca_eval", "mt_bench", "vicuna_bench")
SPLITS = ("dev", "test")
AGREEMENT_SETS = ("hhh", "autoj", "mt_bench_human")

Item = TypeVar("Item")


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    category: str

    def messages(self) -> tuple[ChatMessage, ...]:
        """The prompt as a one-turn conversation."""
        return (ChatMessage("user", self.text),)


@dataclass(frozen=True)
class LabelledPair:
    """Two answers to one prompt and the human preference: "a", "b" or "tie"."""

    subset: str
    prompt: str
    a: str
    b: str
    label: Literal["a", "b", "tie"]


def data_dir(explicit: str | Path | None = None) -> Path:
    chosen = explicit or os.environ.get("BLENDGATE_EVAL_DATA") or Path("..") / "shared" / "data"
    return Path(chosen)


def load_prompts(spec: str, directory: Path) -> list[Prompt]:
    """``spec``: a JSONL path, or a set name (``alpaca_eval``, ``mt_bench``, ``vicuna_bench``).

    JSONL lines need ``prompt`` (or ``instruction``, or ``turns``); ``id`` and ``category`` are
    optional. MT-bench questions are asked by their first turn only."""
    if spec == "alpaca_eval":
        path = directory / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json.gz"
        records = json.loads(_read(path))
        return [Prompt(str(i), r["instruction"], r.get("dataset", "alpaca_eval"))
                for i, r in enumerate(records)]
    if spec in ("mt_bench", "vicuna_bench"):
        sub = "question.jsonl" if spec == "mt_bench" else "vicuna_bench/question.jsonl"
        return [Prompt(str(r["question_id"]), r["turns"][0], r.get("category", spec))
                for r in _jsonl(directory / "mt_bench" / sub)]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"no prompt set {spec!r}: not a file, and not one of {PROMPT_SETS}")
    prompts = []
    for i, r in enumerate(_jsonl(path)):
        text = r.get("prompt") or r.get("instruction") or (r.get("turns") or [None])[0]
        if not isinstance(text, str) or not text:
            raise ConfigError(f"{path}: line {i + 1} has no prompt / instruction / turns")
        prompts.append(Prompt(str(r.get("id", i)), text, str(r.get("category", "all"))))
    return prompts


def choose(items: Sequence[Item], *, limit: int | None = None, sample: int | None = None,
           seed: int = 0) -> list[Item]:
    """``sample``: a seeded random ``sample`` of the items (every category has its chance; the
    first N of AlpacaEval are all one category), kept in the set's order. The samples nest: the
    items of ``sample=20`` are among those of ``sample=30`` with the same seed, so a larger run
    reuses a smaller one's cached answers. Then ``limit``: the first N."""
    chosen = list(items)
    if sample is not None:
        order = list(range(len(chosen)))
        random.Random(seed).shuffle(order)
        chosen = [chosen[i] for i in sorted(order[:sample])]
    return chosen[:limit]


def split_prompts(prompts: Sequence[Prompt], split: str, seed: int = 0) -> list[Prompt]:
    """The ``dev`` or the ``test`` half of a prompt set: each prompt falls in one half by a
    seeded hash of its id (``split.unit_hash``), so the halves are disjoint for a seed, stay
    put when the set grows, and a ``--sample`` drawn from one never touches the other. Tune on
    ``dev``, report ``test``."""
    if split not in SPLITS:
        raise ConfigError(f"--split: {split!r} is not one of {SPLITS}")
    return [p for p in prompts
            if (unit_hash(f"eval-split:{seed}", p.id) < 0.5) == (split == "dev")]


# ----------------------------------------------------------------------------- agreement sets

HHH_SUBSETS = {"helpful": "Help.", "harmless": "Harm.", "honest": "Hon.", "other": "Other"}

AUTOJ_GROUPS: dict[str, tuple[str, ...]] = {
    "Summ": ("post_summarization", "text_summarization", "note_summarization"),
    "Exam": ("math_reasoning", "solving_exam_question_with_math",
             "solving_exam_question_without_math"),
    "Code": ("code_simplification", "code_generation", "explaining_code",
             "code_correction_rewriting", "code_to_code_translation"),
    "Rewriting": ("text_simplification", "language_polishing", "instructional_rewriting",
                  "text_correction", "paraphrasing"),
    "Crea W": ("writing_song_lyrics", "writing_social_media_post", "writing_blog_post",
               "writing_personal_essay", "creative_writing", "writing_advertisement",
               "writing_marketing_materials", "writing_presentation_script", "counterfactual"),
    "Func W": ("writing_product_description", "writing_job_application", "writing_news_article",
               "writing_biography", "writing_email", "writing_legal_document",
               "writing_technical_document", "writing_scientific_paper", "functional_writing",
               "writing_cooking_recipe"),
    "Comm": ("asking_how_to_question", "open_question", "analyzing_general",
             "explaining_general", "seeking_advice", "recommendation", "value_judgement",
             "verifying_fact", "chitchat", "roleplay", "planning", "brainstorming"),
    "NLP": ("ranking", "text_to_text_translation", "data_analysis",
            "classification_identification", "title_generation", "question_generation",
            "reading_comprehension", "keywords_extraction", "information_extraction",
            "topic_modeling", "others"),
}
_AUTOJ_GROUP_OF = {s: g for g, scenarios in AUTOJ_GROUPS.items() for s in scenarios}


def load_hhh(directory: Path) -> list[LabelledPair]:
    """BIG-bench hhh_alignment: the answer with target score 1 is chosen (listed first; the
    judge sees both orders, so the listing order does not matter)."""
    pairs = []
    for subset in HHH_SUBSETS:
        task = json.loads(_read(directory / "hhh_alignment" / subset / "task.json"))
        for example in task["examples"]:
            (chosen, _), (rejected, _) = sorted(example["target_scores"].items(),
                                                key=lambda item: -item[1])
            pairs.append(LabelledPair(subset, example["input"], chosen, rejected, "a"))
    return pairs


def load_autoj(directory: Path) -> list[LabelledPair]:
    """Auto-J pairwise test data; label 0 = response 1 better, 1 = response 2, 2 = tie."""
    labels: dict[int, Literal["a", "b", "tie"]] = {0: "a", 1: "b", 2: "tie"}
    return [LabelledPair(_AUTOJ_GROUP_OF.get(r["scenario"], "NLP"), r["prompt"], r["response 1"],
                         r["response 2"], labels[int(r["label"])])
            for r in _jsonl(directory / "autoj_pairwise" / "testdata_pairwise.jsonl")]


def load_mt_bench_human(directory: Path) -> list[LabelledPair]:
    """lmsys/mt_bench_human_judgments, split ``human``, exported to JSON lines (one vote per
    line: conversation_a, conversation_b, winner, turn). Raises ``FileNotFoundError`` when the
    folder has no such file (the shared data has only a note saying where the set lives)."""
    folder = directory / "mt_bench_human_judgments"
    files = sorted(folder.glob("human*.jsonl")) + sorted(folder.glob("human*.json"))
    if not files:
        raise FileNotFoundError(f"no human*.jsonl in {folder} (see its PROVENANCE.md)")
    labels: dict[str, Literal["a", "b", "tie"]] = {"model_a": "a", "model_b": "b", "tie": "tie"}
    pairs = []
    for record in _records(files[0]):
        a, b = record["conversation_a"], record["conversation_b"]
        prompt = "\n\n".join(m["content"] for m in a[:-1] if m["role"] == "user")
        pairs.append(LabelledPair(f"turn {record.get('turn', 1)}", prompt, a[-1]["content"],
                                  b[-1]["content"], labels[record["winner"]]))
    return pairs


# ----------------------------------------------------------------------------- files


def _read(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes()).decode("utf-8")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror} (is --data-dir right?)") from exc


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    for line in _read(path).splitlines():
        if line.strip():
            yield json.loads(line)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".jsonl":
        yield from _jsonl(path)
    else:
        yield from json.loads(_read(path))
