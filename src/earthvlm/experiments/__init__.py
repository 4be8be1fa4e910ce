"""Whole experiments that generate data, train and evaluate: the floor above ``train/`` and
``eval/`` (they import both; nothing below imports them).

* :mod:`~earthvlm.experiments.micro`: micro-ScaleEarth, the scale experiment on a laptop
  CPU and the quickstart's main job;
* :mod:`~earthvlm.experiments.fusion`: the EarthMind fusion experiment (HCA vs the Table 4
  baselines on optical-under-cloud + SAR);
* :mod:`~earthvlm.experiments.presets`: the named presets (``quick``, ``full``, ``ci``)
  each experiment's config is built from.

Each experiment keeps what it measured as plain data in its ``results.py``: the run fills
it in and the report reads it, so the report never imports the run.
"""
