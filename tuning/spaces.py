"""Search spaces for the sweeps: typed, validated, and expanded into trials without repeats.

A space names *parameters* (:data:`PARAMETERS`: the loss weights a1/a2 of eq. (19), RAVF's
depth N, the attention heads, the MS&MRG pair count, the fusion method, the learning rate,
the ablation switches) and gives each a *dimension*:

- ``{kind: choice, values: [...]}``: one value drawn per sample;
- ``{kind: grid, values: [...]}``: every value, crossed with the other grid dimensions;
- ``{kind: uniform, low: L, high: H}`` and ``{kind: loguniform, low: L, high: H}``: floats.

It may also list explicit ``rows`` (one trial each, with the table's label cells), which
is how the paper's ablations (:mod:`tuning.ablations`) are written. A file may ``extends``
a named space and change what differs. :func:`expand` turns a space into :class:`Trial`
objects: a point the config rejects (:class:`avrsp.config.ModelConfig` refuses
meaningless combinations) or one that builds the same network with the same training
settings as an earlier point (``ModelConfig.identity()``) is dropped, with the reason.
Sampling is seeded, so a dry run lists exactly the trials a run will start.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from avrsp.config import FUSION_METHODS, format_validation_error, read_config_file
from avrsp.errors import ConfigError
from workflows.loop import TrainConfig

Scalar = bool | int | float | str


@dataclass(frozen=True)
class Parameter:
    """A tunable value: the dotted :class:`TrainConfig` key it sets and its type."""

    key: str
    type: type
    allowed: tuple[Any, ...] = ()  # for str (and small int) parameters: every legal value
    low: float | None = None  # inclusive bounds of numbers
    high: float | None = None
    positive: bool = False


#: The parameters a space may set (name → TrainConfig key). Bounds repeat nothing: they are
#: checked again by the config when a trial is built; these give early, named errors.
PARAMETERS: dict[str, Parameter] = {
    "a1": Parameter("network.loss.a1", float, low=-10.0, high=10.0),
    "a2": Parameter("network.loss.a2", float, low=-10.0, high=10.0),
    "lr": Parameter("lr", float, positive=True),
    "weight_decay": Parameter("weight_decay", float, low=0.0),
    "ravf_blocks": Parameter("network.model.ravf_blocks", int, low=1, high=12),
    "heads": Parameter("network.model.heads", int, low=1, high=64),
    "ms_mrg_pairs": Parameter("network.model.ms_mrg_pairs", int, allowed=(0, 1, 2, 3, 4)),
    "fusion": Parameter("network.model.fusion", str, allowed=FUSION_METHODS),
    "use_audio": Parameter("network.model.use_audio", bool, allowed=(False, True)),
    "use_ms": Parameter("network.model.use_ms", bool, allowed=(False, True)),
    "use_mrg": Parameter("network.model.use_mrg", bool, allowed=(False, True)),
}
KINDS = ("choice", "grid", "uniform", "loguniform")
METRICS = {"val_loss": "min", "val_cc": "max"}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choice(_Strict):
    kind: Literal["choice"] = "choice"
    values: list[Scalar] = Field(min_length=1)


class Grid(_Strict):
    kind: Literal["grid"] = "grid"
    values: list[Scalar] = Field(min_length=1)


class Uniform(_Strict):
    kind: Literal["uniform"] = "uniform"
    low: float
    high: float

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        return self


class LogUniform(Uniform):
    kind: Literal["loguniform"] = "loguniform"  # type: ignore[assignment]

    @model_validator(mode="after")
    def _positive(self) -> LogUniform:
        if self.low <= 0:
            raise ValueError(f"low {self.low} must be > 0 for loguniform")
        return self


Dimension = Annotated[Choice | Grid | Uniform | LogUniform, Field(discriminator="kind")]


class SearchSpace(_Strict):
    """A sweep's space (see the module docstring); what a spaces file holds."""

    name: str = Field("sweep", pattern=_NAME, description="sweep name (folder, run names)")
    description: str = ""
    title: str = ""
    params: dict[str, Dimension] = Field(default_factory=dict)
    rows: list[dict[str, Any]] = Field(
        default_factory=list,
        description="explicit points, each {param: value, ..., label: [cells]}; crossed "
        "with the grid dimensions of params",
    )
    label_columns: list[str] = Field(default_factory=list, description="row label headers")
    base: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig overrides for every trial (dotted keys)"
    )
    num_samples: int = Field(1, ge=1, le=10_000, description="draws per grid point")
    sample_seed: int = Field(0, description="seed of the draws of choice/uniform dimensions")
    metric: Literal["val_loss", "val_cc"] = "val_loss"
    ablation: str = Field("", description="a named ablation: its published table is quoted")

    @model_validator(mode="after")
    def _check_values(self) -> SearchSpace:
        for name, dim in self.params.items():
            param = PARAMETERS[name]
            if isinstance(dim, Uniform) and param.type is not float:
                raise ValueError(
                    f"params.{name}.kind: {dim.kind} needs a float parameter; {name} is "
                    f"{param.type.__name__}: use choice or grid"
                )
            for k, value in enumerate(getattr(dim, "values", [])):
                check_value(name, value, f"params.{name}.values[{k}]")
            if isinstance(dim, Uniform):
                check_value(name, dim.low, f"params.{name}.low")
                check_value(name, dim.high, f"params.{name}.high")
        for k, row in enumerate(self.rows):
            for name, value in row.items():
                if name == "label":
                    continue
                if name not in PARAMETERS:
                    raise ValueError(
                        f"rows[{k}].{name}: unknown parameter; allowed: {', '.join(PARAMETERS)}"
                    )
                check_value(name, value, f"rows[{k}].{name}")
            label = row.get("label", [])
            if self.label_columns and len(label) != len(self.label_columns):
                raise ValueError(
                    f"rows[{k}].label: {len(label)} cells, expected {len(self.label_columns)} "
                    f"({', '.join(self.label_columns)})"
                )
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "space") -> SearchSpace:
        """Validate a mapping; ``extends: NAME`` starts from a named space (its params and
        base merged with this one's; rows and labels replaced when given)."""
        data = dict(data)
        allowed_keys = ("extends", *cls.model_fields)
        for key in data:
            if key not in allowed_keys:
                raise ConfigError(
                    f"{source}: {key}: unknown key; allowed: {', '.join(allowed_keys)}"
                )
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"{source}: params: expected a mapping of parameter: dimension")
        for name, dim in params.items():
            if name not in PARAMETERS:
                raise ConfigError(
                    f"{source}: params.{name}: unknown parameter; allowed: {', '.join(PARAMETERS)}"
                )
            if isinstance(dim, dict) and dim.get("kind") not in KINDS:
                raise ConfigError(
                    f"{source}: params.{name}.kind: {dim.get('kind')!r} is not one of "
                    f"{', '.join(KINDS)}"
                )
        parent = data.pop("extends", None)
        if parent is not None:
            from tuning.ablations import named_space

            start = named_space(str(parent)).model_dump(mode="json")
            merged = {**start, **{k: v for k, v in data.items() if k not in ("params", "base")}}
            merged["params"] = {**start["params"], **params}
            merged["base"] = {**start["base"], **data.get("base", {})}
            data = merged
        data["params"] = {k: _coerce_floats(k, d) for k, d in data.get("params", {}).items()}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            text = format_validation_error(exc).replace("(root): ", "")
            raise ConfigError(f"{source}: {text}") from None

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        """Read a YAML or JSON spaces file (by suffix); errors name the file and the key."""
        return cls.from_dict(read_config_file(path), source=str(path))

    @property
    def mode(self) -> str:
        return METRICS[self.metric]


def _coerce_floats(name: str, dim: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string: accept it for float parameters."""
    if PARAMETERS[name].type is not float or not isinstance(dim, dict):
        return dim

    def number(v: Any) -> Any:
        try:
            return float(v) if isinstance(v, str) else v
        except ValueError:
            return v

    dim = dict(dim)
    if isinstance(dim.get("values"), list):
        dim["values"] = [number(v) for v in dim["values"]]
    for key in ("low", "high"):
        if key in dim:
            dim[key] = number(dim[key])
    return dim


def check_value(name: str, value: Any, where: str) -> None:
    """ValueError naming ``where`` and the allowed values when ``value`` cannot be ``name``."""
    param = PARAMETERS[name]
    if param.type is bool:
        ok = isinstance(value, bool)
    elif param.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif param.type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ValueError(f"{where}: {value!r} is not a {param.type.__name__}")
    if param.allowed and value not in param.allowed:
        choices = ", ".join(json.dumps(a) for a in param.allowed)
        raise ValueError(f"{where}: {value!r} not allowed for {name}; choose from {choices}")
    if param.positive and not value > 0:
        raise ValueError(f"{where}: {name} must be > 0, got {value!r}")
    below = param.low is not None and value < param.low
    if below or (param.high is not None and value > param.high):
        raise ValueError(f"{where}: {name} must be in [{param.low}, {param.high}], got {value!r}")


# --------------------------------------------------------------------------- expansion


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep: ``row`` groups the seeds of one table row."""

    name: str
    row: int
    labels: tuple[str, ...]
    values: dict[str, Any]
    seed: int
    config: TrainConfig

    def describe(self) -> str:
        return " ".join(f"{k}={json.dumps(v)}" for k, v in self.values.items())


@dataclass
class Expansion:
    """The trials of a space, and the points dropped (values, reason)."""

    trials: list[Trial]
    dropped: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    label_columns: tuple[str, ...] = ("Trial", "Values")

    @property
    def rows(self) -> int:
        return len({t.row for t in self.trials})


def points(space: SearchSpace) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """Every point of ``space`` with its label cells: rows × grid × ``num_samples`` draws."""
    rng = np.random.default_rng(space.sample_seed)
    grid = {k: d.values for k, d in space.params.items() if isinstance(d, Grid)}
    random = {k: d for k, d in space.params.items() if not isinstance(d, Grid)}
    rows = space.rows or [{}]
    out = []
    for row in rows:
        fixed = {k: v for k, v in row.items() if k != "label"}
        label = tuple(str(c) for c in row.get("label", []))
        for combo in itertools.product(*grid.values()):
            for _ in range(space.num_samples if random else 1):
                values = {**fixed, **dict(zip(grid, combo, strict=True))}
                for k, dim in random.items():
                    values[k] = _draw(dim, rng)
                out.append((values, label))
    return out


def _draw(dim: Any, rng: np.random.Generator) -> Any:
    if isinstance(dim, Choice):
        return dim.values[int(rng.integers(len(dim.values)))]
    if isinstance(dim, LogUniform):
        return float(math.exp(rng.uniform(math.log(dim.low), math.log(dim.high))))
    return float(rng.uniform(dim.low, dim.high))


def network_key(cfg: TrainConfig) -> str:
    """Two trials with the same key train the same network the same way: the model's
    ``identity()`` (fields it ignores left out) and every other value, bookkeeping aside."""
    data = cfg.to_dict()
    data["network"]["model"] = cfg.network.model.identity()
    for key in ("run_name", "register_as"):
        data.pop(key, None)
    return json.dumps(data, sort_keys=True, default=str)


def expand(space: SearchSpace, base: TrainConfig, seeds: Sequence[int] = (0,)) -> Expansion:
    """The trials of ``space`` on ``base`` (every point × every seed), without repeats.

    A point whose config is rejected, or that builds the same network with the same
    settings as an earlier one, is dropped with the reason.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: need distinct seeds, got {list(seeds)}")
    try:
        start = base.with_overrides(**space.base) if space.base else base
    except ConfigError as exc:
        raise ConfigError(f"space {space.name!r} base: {exc}") from None
    kept: list[tuple[dict[str, Any], tuple[str, ...], TrainConfig]] = []
    seen: dict[str, int] = {}
    dropped: list[tuple[dict[str, Any], str]] = []
    for values, label in points(space):
        overrides = {PARAMETERS[k].key: v for k, v in values.items()}
        try:
            cfg = start.with_overrides(**overrides)
        except ConfigError as exc:
            dropped.append((values, f"rejected by the config: {exc}"))
            continue
        key = network_key(cfg)
        if key in seen:
            dropped.append((values, f"same network and settings as row {seen[key]}"))
            continue
        seen[key] = len(kept)
        kept.append((values, label, cfg))
    width = max(2, len(str(len(kept) - 1)))
    trials = []
    for row, (values, label, cfg) in enumerate(kept):
        cells = label or (f"{row:0{width}d}", _values_text(values))
        for seed in seeds:
            name = f"{space.name}-{row:0{width}d}" + (f"-s{seed}" if len(seeds) > 1 else "")
            config = cfg.model_copy(update={"seed": seed, "run_name": name})
            trials.append(Trial(name, row, cells, values, seed, config))
    columns = tuple(space.label_columns) if space.label_columns else ("Trial", "Values")
    return Expansion(trials, dropped, columns)


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def dry_run_lines(space: SearchSpace, expansion: Expansion) -> list[str]:
    """What ``avrsp tune --dry-run`` prints: one line per trial, then what was dropped."""
    lines = [
        f"sweep {space.name}: {len(expansion.trials)} trials, {expansion.rows} rows"
        + (f" ({space.title})" if space.title else "")
    ]
    for t in expansion.trials:
        label = " | ".join(c or "–" for c in t.labels)
        lines.append(f"  {t.name}  seed={t.seed}  {t.describe()}  [{label}]")
    if expansion.dropped:
        lines.append(f"dropped {len(expansion.dropped)} points:")
        for values, reason in expansion.dropped:
            lines.append(f"  {_values_text(values)}: {reason}")
    else:
        lines.append("dropped 0 points")
    return lines
