"""Every line of the README's shell blocks runs, as written, in CI.

The lines run in order in one scratch folder (``configs/`` linked in), through ``bash``
with the environment's ``earthvlm`` first on ``PATH``, so globs and quoting are the
README's own. :data:`HOW` says how CI runs each line: as written, with a documented tiny
override appended or swapped in (the full sizes take minutes; the override changes sizes,
never the command), or where another test runs it. A README line missing from
:data:`HOW` fails the suite: a new line needs a plan. The files a line expects from the
user (``scene.tif``, a Sentinel-2 band, a DOTA label file and split) are generated.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
TINY_TRAIN = " --set optim.max_steps=3 --set data.synth.n_chips=48"

#: README line -> how CI runs it: ("run", swaps: [(old, new)], appended text, expected
#: exit code) or ("elsewhere", the test that runs it).
HOW: dict[str, tuple] = {
    "bash scripts/quickstart.sh": (
        "elsewhere",
        "tests/conftest.py::micro_ci: `earthvlm quickstart --preset ci`, what the script "
        "runs after set-up (set-up: scripts/setup.sh, run by CI's own command)",
    ),
    "bash scripts/test.sh": ("elsewhere", ".ci/run: this is CI's command"),
    "earthvlm synth --out world/ --n 200 --chips 600 --views optical,sar,ms --clouds 0.3 --uhr 1": (
        "run",
        [("--n 200", "--n 6"), ("--chips 600", "--chips 36")],
        " --uhr-size 2048",
        0,
    ),
    "earthvlm records check world/records.jsonl --root world/": ("run", [], "", 0),
    "earthvlm gsd world/images/uhr-0000.tif world/images/chip-000000.tif": ("run", [], "", 0),
    "earthvlm gsd --json --verify world/images/scene-00000*_sar.tif": ("run", [], "", 0),
    "earthvlm gsd-examples": ("run", [], "", 0),
    "earthvlm train configs/stage1_tiny_cpu.yaml": ("run", [], TINY_TRAIN, 0),
    "earthvlm train configs/stage2_cshlora_tiny_cpu.yaml --set "
    "model.path=runs/stage1_tiny_cpu/final/model": ("run", [], TINY_TRAIN, 0),
    "earthvlm diagnose spoof --model runs/stage2_cshlora_tiny_cpu --data world/records.jsonl": (
        "run",
        [],
        " --n-boot 50",
        0,
    ),
    "earthvlm diagnose calibration --model runs/stage2_cshlora_tiny_cpu --data "
    "world/records.jsonl": ("run", [], "", 0),
    "earthvlm diagnose probe --model runs/stage2_cshlora_tiny_cpu --data world/records.jsonl": (
        "run",
        [],
        "",
        0,
    ),
    "earthvlm diagnose gates --model runs/stage2_cshlora_tiny_cpu": ("run", [], "", 0),
    'earthvlm ask world/images/uhr-0000.tif "How many planes are there?" --model '
    "runs/stage2_cshlora_tiny_cpu": ("run", [], " --max-new-tokens 16", 0),
    "earthvlm eval --model runs/stage2_cshlora_tiny_cpu --bench synth_chips,synth_vqa --data "
    "world/ --limit 200": ("run", [("--limit 200", "--limit 4")], " --max-new-tokens 8", 0),
    "earthvlm export runs/stage2_cshlora_tiny_cpu --gsd 0.5 --out exported/": ("run", [], "", 0),
    "earthvlm gsd scene.tif "
    "S2A_MSIL2A_20200601T100031_N0214_R122_T33UUP_20200601T115917_B05.jp2 labels/P0001.txt": (
        "run",
        [],
        "",
        0,
    ),
    "earthvlm data convert dota DOTA/train --out data/dota-train --opt version=1.5": (
        "run",
        [],
        "",
        0,
    ),
    # no GPU in CI: the recipe must stop at once with code 2 and the bf16/GPU message
    "earthvlm train configs/stage2_cshlora_paper.yaml --set "
    "model.path=runs/stage1_paper/final/model": ("run", [], "", 2),
    "earthvlm serve runs/my_run --image-root data/ --zoom": ("server", [], " --port {port}", 0),
    "earthvlm eval --endpoint http://127.0.0.1:8000/v1 --served-model my_run --bench "
    "synth_chips --data world/": (
        "run",
        [("8000", "{port}")],
        " --limit 4 --max-new-tokens 8",
        0,
    ),
    "earthvlm serve runs/my_run --port 8000": ("server", [("8000", "{port}")], "", 0),
    "earthvlm eval --model runs/my_run --bench lrs_gro --data LRS-GRO/ --zoom --max-zooms 1": (
        "elsewhere",
        "tests/cli/test_eval_zoom_cli.py: eval --zoom in two processes on a synthetic UHR "
        "world (LRS-GRO's data is not on CI)",
    ),
    'earthvlm detect runs/det scene.tif --out objects.geojson --classes "ship,storage tank" '
    "--tile 1024 --overlap 200": (
        "elsewhere",
        "tests/cli/test_detect_cli.py: detect on a synthetic GeoTIFF to GeoJSON, read back",
    ),
    "earthvlm detect runs/det scene.tif --out objects.gpkg": (
        "elsewhere",
        "tests/cli/test_detect_cli.py: detect to a GeoPackage in the raster's CRS",
    ),
    'earthvlm ask scene.tif "Where is the plane?" --model runs/sft --geojson answer.geojson': (
        "elsewhere",
        "tests/cli/test_detect_cli.py: ask --geojson with a scripted zoom, answer and mask",
    ),
}


def readme_lines() -> list[str]:
    """The commands of the README's ``bash`` blocks, comments and padding removed."""
    text = README.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command:
                out.append(command)
    return out


def test_every_readme_line_has_a_plan() -> None:
    lines = readme_lines()
    assert len(lines) >= 20
    missing = [line for line in lines if line not in HOW]
    assert not missing, f"README lines CI does not run (add them to HOW): {missing}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user_files(cwd: Path) -> None:
    """What the 'your own files' lines expect: a GeoTIFF, a Sentinel-2 band whose name
    its 20 m grid agrees with, a DOTA label file and a DOTA split."""
    import numpy as np
    import rasterio
    from rasterio.transform import Affine

    from _generators import source_generators

    def tif(path: Path, res: float) -> None:
        grid = {"crs": "EPSG:32633", "transform": Affine(res, 0, 5e5, 0, -res, 5e6)}
        profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 1, "dtype": "uint8"}
        with rasterio.open(path, "w", **profile, **grid) as ds:
            ds.write(np.zeros((1, 8, 8), "uint8"))

    tif(cwd / "scene.tif", 0.5)
    tif(cwd / "S2A_MSIL2A_20200601T100031_N0214_R122_T33UUP_20200601T115917_B05.jp2", 20.0)
    (cwd / "labels").mkdir()
    (cwd / "labels" / "P0001.txt").write_text("imagesource:GoogleEarth\ngsd:0.146\n")
    source_generators().write_dota(cwd / "DOTA" / "train")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("readme")
    (cwd / "configs").symlink_to(ROOT / "configs")
    _user_files(cwd)
    return cwd


def _command(line: str, port: int) -> str:
    _, swaps, extra, *_ = HOW[line]
    for old, new in swaps:
        line = line.replace(old, new)
    return (line + extra).replace("{port}", str(port))


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "COLUMNS": "200",
    }


def _wait_for(port: int, proc: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    import urllib.request

    t0 = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except OSError:
            if proc.poll() is not None:
                tail = log.read_text()[-3000:]
                raise AssertionError(f"the server exited ({proc.returncode}):\n{tail}") from None
            assert time.monotonic() - t0 < seconds, "the server did not come up (a hang guard)"
            time.sleep(0.3)


def test_the_readme_runs_in_order(scratch: Path) -> None:
    """Each planned line in README order; the run and the data lines feed the later ones
    (``runs/my_run`` of the serving lines is the stage-2 run, linked)."""
    env = _env()
    port = _free_port()
    server: subprocess.Popen | None = None
    try:
        for line in readme_lines():
            plan = HOW[line]
            if plan[0] == "elsewhere":
                continue
            if "runs/my_run" in line and not (scratch / "runs" / "my_run").exists():
                run = scratch / "runs" / "stage2_cshlora_tiny_cpu"
                (scratch / "runs" / "my_run").symlink_to(run)
            command = _command(line, port)
            if plan[0] == "server":  # up until the next server line or the end
                _stop(server)
                log = open(scratch / "server.log", "a")  # noqa: SIM115 (lives with the server)
                server = subprocess.Popen(
                    ["bash", "-c", f"exec {command}"],
                    cwd=scratch,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                log.close()  # the server holds its own descriptor
                _wait_for(port, server, scratch / "server.log")
                continue
            proc = subprocess.run(
                ["bash", "-c", command],
                cwd=scratch,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            out = proc.stdout + proc.stderr
            assert proc.returncode == plan[3], (
                f"{command}\n-> exit {proc.returncode}\n{out[-4000:]}"
            )
            assert "Traceback" not in out, f"{command}\n{out[-4000:]}"
            if plan[3] == 2:  # the paper recipe on a machine without a GPU
                assert "needs a CUDA GPU" in out, out[-2000:]
    finally:
        _stop(server)


def _stop(server: subprocess.Popen | None) -> None:
    if server is not None and server.poll() is None:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


#: The README's Python blocks, by their first line: run as written after the shell lines
#: (``runs/my_run`` and ``world/`` exist then) and followed by a check of what they state,
#: or ``(None, why not)``.
PYTHON = {
    "from earthvlm.data.jsonl import read_records": "assert len(seqs) == len(records) == 4",
    "model = AutoModelForImageTextToText.from_pretrained(base_dir)": (
        None,
        "a fragment (base_dir, adapter_dir are the reader's); tests/adapters/"
        "test_adapter_folder.py loads an adapter this way",
    ),
    "from openai import OpenAI": (
        None,
        "needs a running server and an image of the reader's ('...' stands for base64); "
        "tests/serve/test_serve.py sends this request",
    ),
    # what the block's comments state
    "from earthvlm.scale.gsd import GSD": (
        "assert (round(res.gsd.point_m, 3), res.decided_by) == (0.472, 'georef')\n"
        "assert tier_of(GSD.range(0.3, 0.6)).name == 'MID'"
    ),
}


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _cogeo(path: Path) -> None:
    """The README's ``cogeo.tif``: Web Mercator at 37.7 N, a 0.597 m grid."""
    import numpy as np
    import rasterio
    from pyproj import Transformer
    from rasterio.transform import Affine

    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(-122.4, 37.7)
    grid = {"crs": "EPSG:3857", "transform": Affine(0.597, 0, x, 0, -0.597, y)}
    profile = {"driver": "GTiff", "width": 16, "height": 16, "count": 1, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile, **grid) as ds:
        ds.write(np.zeros((1, 16, 16), "uint8"))


def test_the_readme_python_runs(scratch: Path) -> None:
    blocks = python_blocks()
    assert {b.splitlines()[0] for b in blocks} == set(PYTHON), "a Python block without a plan"
    if not (scratch / "runs" / "my_run").exists():
        pytest.skip("needs the run the shell lines train (test_the_readme_runs_in_order)")
    _cogeo(scratch / "cogeo.tif")
    for block in blocks:
        check = PYTHON[block.splitlines()[0]]
        if not isinstance(check, str):
            continue
        proc = subprocess.run(
            [sys.executable, "-c", block + "\n" + check],
            cwd=scratch,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{block}\n{proc.stderr[-3000:]}"
