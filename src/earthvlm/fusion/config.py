"""Fusion configuration: which method, the token width, pooling and HCA's lambda.

The config is torch-free so that recipes can be parsed and checked without a model.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass
from typing import Any

from earthvlm.registry import Registry

#: The fusion methods, each the ``"module:attr"`` of its module class (imported on first
#: use by :func:`earthvlm.fusion.build_fusion`): the project's one registry type.
REGISTRY: Registry[type] = Registry("fusion method")
# EarthMind's hierarchical cross-modal attention (sec. 3.2, Eq. 2-7), lambda learned
REGISTRY.register("hca", "earthvlm.fusion.hca:HCAFusion")
# the same with lambda frozen at lambda_init (the release has no learnable lambda)
REGISTRY.register("fixed", "earthvlm.fusion.hca:HCAFusion")
# Table 4's baselines
REGISTRY.register("concat", "earthvlm.fusion.baselines:ConcatFusion")
REGISTRY.register("average", "earthvlm.fusion.baselines:AverageFusion")
REGISTRY.register("cosine", "earthvlm.fusion.baselines:CosineFusion")
#: Method name -> "module:attr" (the registry's table).
METHODS: dict[str, str] = REGISTRY.entries
POOLINGS: tuple[str, ...] = ("avg", "max", "none")
SCORE_SCALES: tuple[str, ...] = ("tokens", "none")


@dataclass(frozen=True)
class FusionConfig:
    """How optical and SAR tokens are fused between the vision projector and the LM.

    Attributes:
        dim: Token width D, the language model's hidden size (the projector's output).
        method: ``hca``, ``fixed``, ``concat``, ``average`` or ``cosine`` (see
            :data:`METHODS`).
        pooling: How optical tokens are brought onto the SAR token grid before a
            token-wise fusion (sec. 3.2, before Eq. 2): adaptive ``avg`` or ``max``
            pooling, or ``none`` (the grids must already match, as in the release).
            ``concat`` never pools.
        lambda_init: Initial lambda of Eq. 6, the weight of cross-sensor importance
            against text relevance, in (0, 1). Learned (through a sigmoid, so it stays in
            [0, 1]) by ``hca``; constant for ``fixed``.
        score_scale: ``tokens`` multiplies alpha and beta by the token count N so that a
            token of average importance scores 1; ``none`` keeps Eq. 3 and 5 as written.
            Both sum to 1 over N tokens as written, so with hundreds of tokens every
            gamma is ~1/N and the two-way softmax of Eq. 7 gives ~0.5 / 0.5 whatever the
            attention says; scaling by N keeps the weights sensitive.
        temperature: The sensors' scores are divided by this before the two-way softmax
            (``hca``, ``fixed``, ``cosine``). 1.0 is the paper's Eq. 7.
    """

    dim: int
    method: str = "hca"
    pooling: str = "avg"
    lambda_init: float = 0.5
    score_scale: str = "tokens"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"dim must be a positive int (the LM hidden size), got {self.dim!r}")
        if self.method not in METHODS:
            near = difflib.get_close_matches(str(self.method), METHODS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {self.method!r}{hint}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not (math.isfinite(self.lambda_init) and 0.0 < self.lambda_init < 1.0):
            raise ValueError(
                f"lambda_init must be strictly between 0 and 1 (it is learned through a "
                f"sigmoid), got {self.lambda_init}"
            )
        if self.score_scale not in SCORE_SCALES:
            raise ValueError(f"score_scale must be one of {SCORE_SCALES}, got {self.score_scale!r}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def learns_lambda(self) -> bool:
        return self.method == "hca"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FusionConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fusion config field(s) {sorted(unknown)}")
        return cls(**d)
