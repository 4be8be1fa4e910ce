"""Training: one readable SFT loop for ScaleEarth stage 1 and stage 2 (on ``accelerate``).

* :mod:`~earthvlm.train.config`: the typed run config, YAML recipes, ``--set`` overrides;
* :mod:`~earthvlm.train.sft`: the loop (:func:`train`);
* :mod:`~earthvlm.train.model`: what is trained (backbone, adapter, SSE-U head);
* :mod:`~earthvlm.train.data`: records, the batch sampler, micro-batches;
* :mod:`~earthvlm.train.checkpoint`: atomic, resumable checkpoints without pickle;
* :mod:`~earthvlm.train.schedule`, :mod:`~earthvlm.train.metrics`: schedules, logging.
"""

from earthvlm.train.config import TrainConfig, config_from_dict, load_config
from earthvlm.train.sft import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "config_from_dict", "load_config", "train"]
