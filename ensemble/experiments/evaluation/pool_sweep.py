"""``eval --pool --sweep``: an ensemble's variants over one setting, to tune it on dev.

``--sweep 'blend-skip:skip_fusion.agreement=0.7,0.8,0.9'`` adds the ensemble ``blend-skip``
once per value with that setting changed, as ensembles of their own
(``blend-skip[skip_fusion.agreement=0.7]``...). They share the base's members, so they draw
on the same pool: their rankings and fusions are the base's (cached by content), and a sweep
costs no generation and no verdict beyond the base's. The path is dotted, a list index as a
number (``cascade.0.accept.agreement``); each variant is validated like any ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from ensemble.config import EnsembleModelConfig
from ensemble.errors import ConfigError


@dataclass(frozen=True)
class Sweep:
    ensemble: str
    path: tuple[str, ...]
    values: tuple[Any, ...]

    @property
    def setting(self) -> str:
        return ".".join(self.path)


def parse_sweep(text: str) -> Sweep:
    """``ENSEMBLE:PATH=V1,V2,...``; each value is read as YAML (numbers, null, true...)."""
    head, _, values = text.partition("=")
    ensemble, _, path = head.partition(":")
    if not (ensemble.strip() and path.strip() and values.strip()):
        raise ConfigError(f"--sweep {text!r}: expected ENSEMBLE:SETTING=V1,V2,... e.g. "
                          "'blend-skip:skip_fusion.agreement=0.7,0.8'")
    try:
        parsed = tuple(yaml.safe_load(v) for v in values.split(",") if v.strip())
    except yaml.YAMLError as exc:
        raise ConfigError(f"--sweep {text!r}: {exc}") from None
    return Sweep(ensemble.strip(), tuple(path.strip().split(".")), parsed)


def sweep_variants(ensembles: Sequence[EnsembleModelConfig],
                   sweeps: Sequence[Sweep]) -> list[EnsembleModelConfig]:
    """Every sweep's variants, in order (the base ensembles are not repeated)."""
    by_id = {e.id: e for e in ensembles}
    variants = []
    for sweep in sweeps:
        base = by_id.get(sweep.ensemble)
        if base is None:
            raise ConfigError(f"--sweep: {sweep.ensemble!r} is not among the chosen ensembles "
                              f"{sorted(by_id)}")
        variants += [_variant(base, sweep, value) for value in sweep.values]
    return variants


def _variant(base: EnsembleModelConfig, sweep: Sweep, value: Any) -> EnsembleModelConfig:
    data = base.model_dump(exclude_unset=True)
    _assign(data, sweep, value)
    data["id"] = f"{base.id}[{sweep.setting}={value}]"
    try:
        return EnsembleModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"--sweep {base.id}:{sweep.setting}={value}: {exc}") from None


def _assign(data: dict[str, Any], sweep: Sweep, value: Any) -> None:
    """Set ``sweep.path`` in ``data``; the sections on the way are created when unset."""
    node: Any = data
    for step, key in enumerate(sweep.path):
        last = step == len(sweep.path) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--sweep {sweep.ensemble}:{sweep.setting}: {key!r} is no "
                                  f"index of a list of {len(node)}")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = {}
                node = node[key]
        else:
            raise ConfigError(f"--sweep {sweep.ensemble}:{sweep.setting}: "
                              f"{'.'.join(sweep.path[:step])} is a value, not a section")
