"""ScaleEarth in one forward pass: vision -> SSE-U -> GSD decision -> gates -> language model.

:class:`ScaleEarth` wraps a Qwen-VL model that has CS-HLoRA layers. Two hooks tie the
pieces together (the project's HF-stack notes explain why these two points):

* a forward hook on the vision tower captures each image's mean-pooled merged tokens
  (the feature SSE-U reads); the tower runs once per call, in training and in
  ``generate()`` alike;
* a forward pre-hook on the language model runs after the vision tower in every path;
  there the per-image scales are decided and written to the shared
  :class:`~earthvlm.adapters.context.ScaleContext` before any gated layer runs. Decoding
  steps find the scale already set and keep it (and the layers keep their cached gates).

How gates follow views (multi-image samples, e.g. a global view then a zoomed crop):
gates are **per token**. Every token is conditioned on the GSD of the most recent image
before it in its sample (tokens before the first image use the first image's GSD), so
a question about a crop is answered under the crop's GSD while the global view's tokens
keep theirs. Decoded tokens continue with the last image's GSD. A sample without images
uses its metadata GSD if given, else the neutral 1 m.

With optical + SAR fusion (:class:`~earthvlm.models.fusion.EarthFusion`, attached as
``fusion``): every view keeps its own GSD (SSE-U reads and is trained on each image, the
pair's optical and SAR alike, and each gets its own decision), and the tokens of a fused
pair take the **SAR image's** scale: the fused tokens lie on the SAR token grid (sec.
3.2), which also gives them their MRoPE positions. Concatenation keeps two slots, each
with its own image's scale. Call the fused model through :meth:`ScaleEarth.call`.

Scale rules:

* training (``scale_mode="train"``, Eq. 4): exact GSD -> log10 g, replaced by SSE-U's mu
  with probability p_e2e = 0.2; range -> uniform in the log range; unknown -> mu;
* evaluation and inference (``"infer"``, Eq. 5): metadata (a range at its geometric
  mean) -> confident SSE-U estimate (sigma < 0.3) -> neutral 1 m, branch reported.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from earthvlm.adapters.context import ScaleContext
from earthvlm.errors import EarthVLMError
from earthvlm.models.backbone import pool_merged_tokens
from earthvlm.models.sseu import SSEUHead, gaussian_nll
from earthvlm.scale.gsd import GSD, GSDKind
from earthvlm.scale.inference import NEUTRAL_GSD_M, SIGMA_TAU, ScaleDecision, decide_gsd


@dataclass(frozen=True)
class ScaleEarthConfig:
    """Inference and training rules of the scale path.

    Attributes:
        sigma_tau: SSE-U confidence threshold on sigma (log10 units), Eq. 5.
        neutral_gsd_m: The neutral fallback GSD g0, Eq. 5.
        p_e2e: Probability that an exact GSD is replaced by mu in training, Eq. 4.
        per_token: Per-token gates (most recent view); False: one gate per sample from
            its last image.
    """

    sigma_tau: float = SIGMA_TAU
    neutral_gsd_m: float = NEUTRAL_GSD_M
    p_e2e: float = 0.2
    per_token: bool = True


@dataclass
class ScaleOutputs:
    """What the scale path decided in the last call.

    Attributes:
        mu: SSE-U mean per image (None without images or head).
        logvar: SSE-U log variance per image.
        s_image: The log10 GSD each image was conditioned on.
        decisions: Per image, the Eq. 5 decision (inference) or None (training).
        image_sample: The sample index of each image.
    """

    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    s_image: torch.Tensor | None = None
    decisions: list[ScaleDecision | None] = field(default_factory=list)
    image_sample: list[int] = field(default_factory=list)

    def nll(self, gsds: Sequence[GSD | None]) -> torch.Tensor:
        """Eq. 3 on the exact-GSD images of the call."""
        if self.mu is None or self.logvar is None:
            raise EarthVLMError("no SSE-U output in the last call (no images, or no head)")
        mask = torch.tensor([g is not None and g.kind is GSDKind.EXACT for g in gsds])
        target = torch.tensor(
            [g.log10_gsd if m else 0.0 for g, m in zip(gsds, mask.tolist(), strict=True)]
        )
        return gaussian_nll(
            self.mu, self.logvar, target.to(self.mu.device), mask.to(self.mu.device)
        )


class _Call:
    def __init__(
        self,
        gsds: list[GSD | None] | None,
        input_ids: torch.Tensor | None,
        mode: str,
        rng: random.Random,
    ) -> None:
        self.gsds, self.input_ids, self.mode, self.rng = gsds, input_ids, mode, rng
        self.features: torch.Tensor | None = None
        self.resolved = False


class ScaleEarth(nn.Module):
    """A Qwen-VL model with CS-HLoRA gates driven by the GSD, and an SSE-U head.

    Args:
        model: A ``Qwen3VLForConditionalGeneration`` / ``Qwen2_5_VLForConditionalGeneration``
            with CS-HLoRA injected (see :func:`earthvlm.adapters.cshlora.inject_cshlora`).
        context: The scale context its gated layers read.
        sseu: The SSE-U head (``None``: metadata or the neutral GSD only).
        config: The scale rules.
    """

    def __init__(
        self,
        model: nn.Module,
        context: ScaleContext,
        sseu: SSEUHead | None = None,
        config: ScaleEarthConfig | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.sseu = sseu
        self.config = config or ScaleEarthConfig()
        object.__setattr__(self, "context", context)
        inner = model.model
        self.image_token_id = int(model.config.image_token_id)
        self.merge = int(inner.visual.spatial_merge_size)
        self._call: _Call | None = None
        self.last = ScaleOutputs()
        #: An :class:`~earthvlm.models.fusion.EarthFusion` around ``model`` whose image
        #: groups say which image's scale each placeholder run takes (:meth:`attach_fusion`).
        object.__setattr__(self, "fusion", None)
        inner.visual.register_forward_hook(self._vision_hook, with_kwargs=True)
        inner.language_model.register_forward_pre_hook(self._lm_pre_hook)

    def attach_fusion(self, fusion: Any) -> None:
        """Read image groups from ``fusion`` (an ``EarthFusion`` around ``self.model``).

        Kept as a plain attribute, not a submodule: its parameters belong to whoever
        owns the fusion module (saved under ``fusion.``, not twice).
        """
        if fusion is not None and fusion.model is not self.model:
            raise EarthVLMError("attach_fusion: the EarthFusion must wrap this ScaleEarth's model")
        object.__setattr__(self, "fusion", fusion)

    # -- hooks ----------------------------------------------------------------------------

    def _vision_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        call = self._call
        if call is None:
            return
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        merged = output.pooler_output if hasattr(output, "pooler_output") else output[1]
        call.features = pool_merged_tokens(merged, grid, self.merge)

    def _lm_pre_hook(self, module: nn.Module, args: tuple) -> None:
        call = self._call
        if call is None or call.resolved:
            return
        call.resolved = True
        self.context.set(self._decide(call))

    # -- the scale path -------------------------------------------------------------------

    def _image_runs(self, input_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
        """Per sample, the (start, end) token positions of each image, in order."""
        is_img = (input_ids == self.image_token_id).cpu()
        # a run starts where an image token follows a non-image one, ends where it stops
        # (a token loop per row cost a tenth of a scoring forward on the tiny models)
        edge = torch.diff(torch.nn.functional.pad(is_img.to(torch.int8), (1, 1)), dim=1)
        rows_s, cols_s = (edge == 1).nonzero(as_tuple=True)
        cols_e = (edge == -1).nonzero(as_tuple=True)[1]
        runs: list[list[tuple[int, int]]] = [[] for _ in range(is_img.shape[0])]
        for b, start, end in zip(rows_s.tolist(), cols_s.tolist(), cols_e.tolist(), strict=True):
            runs[b].append((start, end))
        return runs

    def _run_images(self, runs: list[list[tuple[int, int]]]) -> list[list[int]]:
        """Per sample, the image (index over the batch) whose scale each run takes.

        Without fusion, run k is image k. With fusion, a fused pair's one run takes its
        SAR image, a concatenated pair's two runs their own images.
        """
        groups = self.fusion.last.groups if self.fusion is not None else []
        if not groups:
            out, k = [], 0
            for r in runs:
                out.append(list(range(k, k + len(r))))
                k += len(r)
            return out
        out = [[] for _ in runs]
        for g in groups:
            if g.is_pair and len(g.runs) == 1:
                out[g.sample].append(g.pair[1])
            else:
                out[g.sample].extend(sorted(g.images))
        if [len(r) for r in out] != [len(r) for r in runs]:
            raise EarthVLMError(
                "the fusion's image groups do not match the prompt's image slots; run the "
                "fused model through ScaleEarth.call"
            )
        return out

    def _decide(self, call: _Call) -> torch.Tensor:
        cfg = self.config
        ids = call.input_ids
        if ids is None:
            raise EarthVLMError("ScaleEarth needs input_ids to place per-image gates")
        runs = self._image_runs(ids)
        run_images = self._run_images(runs)
        groups = self.fusion.last.groups if self.fusion is not None else []
        n_images = sum(len(g.images) for g in groups) or sum(len(r) for r in runs)
        gsds = list(call.gsds) if call.gsds is not None else [None] * n_images
        if len(gsds) != n_images:
            raise EarthVLMError(
                f"got {len(gsds)} GSD value(s) for {n_images} image(s) in the batch: give "
                "one per image, in batch order (None where unknown)"
            )
        device = ids.device
        mu = logvar = None
        if call.features is not None and self.sseu is not None:
            if call.features.shape[0] != n_images:
                raise EarthVLMError(
                    f"the vision tower saw {call.features.shape[0]} images, the prompt has "
                    f"{n_images} image runs"
                )
            mu, logvar = self.sseu(call.features)
        s_list: list[torch.Tensor] = []
        decisions: list[ScaleDecision | None] = []
        for k, g in enumerate(gsds):
            m = mu[k] if mu is not None else None
            if call.mode == "train":
                s_list.append(self._train_scale(g, m, call.rng))
                decisions.append(None)
            else:
                d = decide_gsd(
                    g, float(m.detach()) if m is not None else None,
                    float(logvar[k].detach()) if logvar is not None else None,
                    sigma_tau=cfg.sigma_tau, neutral_m=cfg.neutral_gsd_m,
                )  # fmt: skip
                decisions.append(d)
                s_list.append(torch.tensor(d.log10_gsd, device=device))
        s_image = torch.stack(s_list).float() if s_list else torch.zeros(0, device=device)
        if groups:
            image_sample = [g.sample for g in groups for _ in g.images]
        else:
            image_sample = [b for b, r in enumerate(runs) for _ in r]
        self.last = ScaleOutputs(mu, logvar, s_image, decisions, image_sample)
        neutral = math.log10(cfg.neutral_gsd_m)
        batch, seq = ids.shape
        if not cfg.per_token:
            rows = [
                s_image[im[-1]] if im else torch.tensor(neutral, device=device) for im in run_images
            ]
            return torch.stack(rows).float()
        s_tok = torch.full((batch, seq), neutral, device=device, dtype=torch.float32)
        for b, r in enumerate(runs):
            for j, (start, _end) in enumerate(r):
                s_tok[b, 0 if j == 0 else start :] = s_image[run_images[b][j]]
        return s_tok

    def _train_scale(
        self, g: GSD | None, mu: torch.Tensor | None, rng: random.Random
    ) -> torch.Tensor:
        """Eq. 4's effective scale for one image in training."""
        if g is not None and g.kind is GSDKind.EXACT:
            if mu is not None and rng.random() < self.config.p_e2e:
                return mu
            return torch.tensor(g.log10_gsd)
        if g is not None and g.kind is GSDKind.RANGE:
            return torch.tensor(g.sample_log10(rng))
        if mu is None:
            return torch.tensor(math.log10(self.config.neutral_gsd_m))
        return mu

    # -- calls ----------------------------------------------------------------------------

    def _run(
        self, fn: Any, gsd: Sequence[GSD | None] | None, mode: str, seed: int | None, kwargs: dict
    ) -> Any:
        if mode not in ("train", "infer"):
            raise ValueError(f"scale_mode must be 'train' or 'infer', got {mode!r}")
        rng = random.Random(seed)
        self._call = _Call(
            list(gsd) if gsd is not None else None, kwargs.get("input_ids"), mode, rng
        )
        try:
            return fn(**kwargs)
        finally:
            self._call = None

    def forward(
        self,
        *,
        gsd: Sequence[GSD | None] | None = None,
        scale_mode: str | None = None,
        seed: int | None = None,
        **inputs: Any,
    ) -> Any:
        """Run the model with GSD-conditioned gates.

        Args:
            gsd: One GSD (or None) per image, in batch order.
            scale_mode: ``train`` (Eq. 4) or ``infer`` (Eq. 5); default from
                ``self.training``.
            seed: Seed of the training-time draws (p_e2e, ranges).
            **inputs: The processor's outputs (``input_ids``, ``pixel_values``, ...).
        """
        mode = scale_mode or ("train" if self.training else "infer")
        return self._run(self.model, gsd, mode, seed, inputs)

    def call(
        self,
        fn: Any,
        *,
        gsd: Sequence[GSD | None] | None = None,
        scale_mode: str | None = None,
        seed: int | None = None,
        **inputs: Any,
    ) -> Any:
        """``fn(**inputs)`` with GSD-conditioned gates, where ``fn`` runs ``self.model``
        inside a wrapper (an :class:`~earthvlm.models.fusion.EarthFusion` or
        :class:`~earthvlm.models.seg.EarthSeg` around it, or their ``generate``)."""
        mode = scale_mode or ("train" if self.training else "infer")
        return self._run(fn, gsd, mode, seed, inputs)

    @torch.no_grad()
    def generate(self, *, gsd: Sequence[GSD | None] | None = None, **inputs: Any) -> Any:
        """``model.generate`` with each sample's gates fixed for the whole decode."""
        return self._run(self.model.generate, gsd, "infer", None, inputs)
