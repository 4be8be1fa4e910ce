"""Training: one readable SFT loop for ScaleEarth stage 1 and stage 2 (on ``accelerate``),
and GRPO for the zoom policy.

* :mod:`~earthvlm.train.config`: the typed run config, YAML recipes, ``--set`` overrides;
* :mod:`~earthvlm.train.sft`: the loop (:func:`train`);
* :mod:`~earthvlm.train.params`: what trains, in which optimiser group (the model
  itself is :class:`earthvlm.models.EarthVLM`);
* :mod:`~earthvlm.train.data`: records, the batch sampler, micro-batches;
* :mod:`~earthvlm.train.checkpoint`: atomic, resumable checkpoints without pickle;
* :mod:`~earthvlm.train.schedule`, :mod:`~earthvlm.train.metrics`: schedules, logging;
* :mod:`~earthvlm.train.rewards` (torch-free), :mod:`~earthvlm.train.grpo`: RL.

``train`` and ``TrainResult`` are imported on first use, so the torch-free modules
(config, rewards) load without torch.
"""

from typing import Any

from earthvlm.train.config import TrainConfig, config_from_dict, load_config

__all__ = ["TrainConfig", "TrainResult", "config_from_dict", "load_config", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):
        from earthvlm.train import sft

        return getattr(sft, name)
    raise AttributeError(f"module 'earthvlm.train' has no attribute {name!r}")
