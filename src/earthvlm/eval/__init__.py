"""Evaluation: benchmarks, torch-free metrics, diagnostics and the benchmark runner.

* :mod:`~earthvlm.eval.benchmarks`: one registry of benchmarks (synthetic chips / VQA /
  grounding / detection, XLRS-Bench-lite, OmniEarth, RSVQA, scene classification,
  DIOR-RSVG, DOTA, LRS-VQA, LRS-GRO, VRSBench, EarthMind-Bench); each yields examples,
  scores predictions and gives the same score as an RL reward;
* :mod:`~earthvlm.eval.metrics`: the scorers (no torch);
* :mod:`~earthvlm.eval.diagnostics` and :mod:`~earthvlm.eval.diagnose`: GSD spoofing,
  gates, calibration, rank probes, paired tests, reports;
* :mod:`~earthvlm.eval.runner`: batched greedy generation with a resumable, sharded cache;
* :mod:`~earthvlm.eval.zoom` and :mod:`~earthvlm.eval.zoom_report`: the zoom arm (every
  example through the zoom loop, crops read natively) and its summary;
* :mod:`~earthvlm.eval.choice`: closed-set answers by likelihood;
* :mod:`~earthvlm.eval.judge`: the open-ended LLM judge; :mod:`~earthvlm.eval.lmms_export`.

``eval`` sits beside ``train`` (neither imports the other), above the model parts;
``experiments`` and ``cli`` sit above it.
"""
