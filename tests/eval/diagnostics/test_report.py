"""The report carries the numbers, the config, the seed and the package version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import earthvlm
from earthvlm.eval.diagnostics import (
    PAPER_SPOOF_GSDS_M,
    SpoofSample,
    spoof_curve,
    sseu_calibration,
    write_report,
)


def test_the_report_holds_numbers_seed_config_and_version(tmp_path: Path) -> None:
    samples = [SpoofSample(a, 0.15, i) for i, a in enumerate(["car", "plane"] * 20)]
    curve = spoof_curve(lambda b, g: [s.answer for s in b], samples, PAPER_SPOOF_GSDS_M,
                        train_range_m=(0.05, 10), n_boot=100, seed=42)  # fmt: skip
    rng = np.random.default_rng(0)
    true = rng.uniform(-1, 1, 50)
    stats = sseu_calibration(true + rng.normal(0, 0.1, 50), np.full(50, 2 * np.log(0.1)), true)
    fig = tmp_path / "figs" / "spoof.png"
    fig.parent.mkdir()
    fig.write_bytes(b"\x89PNG")
    out = write_report(
        tmp_path / "report.md",
        {"GSD spoofing": curve, "SSE-U calibration": stats, "Notes": "hand-written *text*"},
        config={"model": "tiny", "n_boot": 100, "sweep_m": list(PAPER_SPOOF_GSDS_M)},
        seed=42,
        figures={"spoof curves": fig},
    )
    text = out.read_text()
    assert earthvlm.__version__ in text
    assert "| 42 |" in text and '"n_boot": 100' in text
    assert f"{stats.ratio:.3f}" in text and "1.000" in text  # a ratio, the accuracies
    assert "OUT (100%)" in text  # 0.01 m is outside the training range
    assert "hand-written *text*" in text and "](figs/spoof.png)" in text
    twin = json.loads(out.with_suffix(".json").read_text())
    assert twin["seed"] == 42 and twin["earthvlm_version"] == earthvlm.__version__
    assert twin["sections"]["SSE-U calibration"]["ratio"] == stats.ratio
    assert twin["sections"]["GSD spoofing"]["accuracy"] == [1.0] * 13
    assert "Notes" not in twin["sections"]


def test_the_numpy_diagnostics_import_without_torch_or_matplotlib() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; "
        "import earthvlm.eval.diagnostics as d; "
        "assert 'matplotlib' not in sys.modules; "
        "print(d.spoof_curve.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
