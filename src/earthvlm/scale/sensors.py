"""The sensor table and the parsers that recognise sensors in file names and headers.

GeoScale-VQA's GSD injection (ScaleEarth sec. 2.2) first parses metadata (file names,
tile identifiers, headers) to find the sensor, then looks the sensor up: a canonical
GSD, or a range for mixed-platform sources. A name that says the band (``_B04``,
``-P1BS``, ``_PMS_``) gives an exact value; a name that only says the platform gives the
``[pan, multispectral]`` range, because the same product name covers both.

Values are the operators' nominal nadir GSDs of the delivered products; each entry
cites its source. Products are often resampled (Pleiades 0.7 m native is delivered at
0.5 m): the table gives the delivered value, and a file's own georeferencing, when
present, wins over it in the resolver.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

from earthvlm.errors import GSDError
from earthvlm.scale.gsd import GSD, GSDSource


@dataclass(frozen=True)
class Sensor:
    """One sensor's nominal GSDs (metres per pixel).

    Attributes:
        name: Display name.
        pan_m: Panchromatic (finest) GSD, or ``None`` if the sensor has no pan band.
        ms_m: Multispectral GSD (for aerial cameras, the product GSD).
        source: Where the numbers come from.
    """

    name: str
    pan_m: float | None
    ms_m: float
    source: str

    def gsd(self, band: str | None, detail: str) -> GSD:
        """Exact for a known band kind (``pan``/``ms``), else the ``[pan, ms]`` range."""
        if band == "pan" and self.pan_m is not None:
            return GSD.exact(self.pan_m, GSDSource.SENSOR_TABLE, f"{detail}: {self.name} pan")
        if band == "ms" or self.pan_m is None:
            return GSD.exact(self.ms_m, GSDSource.SENSOR_TABLE, f"{detail}: {self.name} MS")
        return GSD.range(
            self.pan_m,
            self.ms_m,
            GSDSource.SENSOR_TABLE,
            f"{detail}: {self.name}, pan or MS not stated",
        )


# Keys are lower-case identifiers used by dataset configs (``sensor: sentinel-2``).
SENSORS: dict[str, Sensor] = {
    # ESA Sentinel-2 User Handbook, sec. 1.2 (spatial resolution per band)
    "sentinel-2": Sensor("Sentinel-2 MSI", None, 10.0, "ESA Sentinel-2 User Handbook"),
    # ESA Sentinel-1 User Guide, IW GRD high resolution: 10 m pixel spacing
    "sentinel-1": Sensor("Sentinel-1 IW GRD", None, 10.0, "ESA Sentinel-1 User Guide"),
    # USGS Landsat 8-9 OLI/TIRS Collection 2 Level-1 Data Format Control Book
    "landsat-8": Sensor("Landsat 8 OLI", 15.0, 30.0, "USGS Landsat 8-9 C2 L1 DFCB"),
    "landsat-9": Sensor("Landsat 9 OLI-2", 15.0, 30.0, "USGS Landsat 8-9 C2 L1 DFCB"),
    # USGS Landsat 7 ETM+ Collection 2 Level-1 DFCB
    "landsat-7": Sensor("Landsat 7 ETM+", 15.0, 30.0, "USGS Landsat 7 C2 L1 DFCB"),
    # USGS Landsat 4-5 TM Collection 2 Level-1 DFCB (thermal resampled to 30 m)
    "landsat-5": Sensor("Landsat 5 TM", None, 30.0, "USGS Landsat 4-5 TM C2 L1 DFCB"),
    "landsat-4": Sensor("Landsat 4 TM", None, 30.0, "USGS Landsat 4-5 TM C2 L1 DFCB"),
    # USGS Landsat MSS C2 DFCB: delivered at 60 m
    "landsat-mss": Sensor("Landsat MSS", None, 60.0, "USGS Landsat 1-5 MSS C2 L1 DFCB"),
    # NASA Harmonized Landsat Sentinel-2 v2.0 User Guide: all products on a 30 m grid
    "hls": Sensor("HLS (Landsat/Sentinel-2 harmonised)", None, 30.0, "NASA HLS v2.0 User Guide"),
    # USDA FSA NAIP imagery information sheet: 1 m before ~2016, 0.6 m after
    "naip": Sensor("NAIP", None, 0.6, "USDA FSA NAIP information sheet"),
    # USGS High Resolution Orthoimagery: 0.15-0.3 m products (RSVQA-HR uses 0.15 m)
    "usgs-hro": Sensor("USGS HRO", 0.15, 0.3, "USGS EROS HRO product description"),
    # Maxar (DigitalGlobe) satellite data sheets
    "worldview-1": Sensor("WorldView-1", 0.5, 0.5, "Maxar WorldView-1 data sheet"),
    "worldview-2": Sensor("WorldView-2", 0.46, 1.84, "Maxar WorldView-2 data sheet"),
    "worldview-3": Sensor("WorldView-3", 0.31, 1.24, "Maxar WorldView-3 data sheet"),
    "geoeye-1": Sensor("GeoEye-1", 0.41, 1.65, "Maxar GeoEye-1 data sheet"),
    "quickbird": Sensor("QuickBird", 0.61, 2.44, "Maxar QuickBird data sheet"),
    "ikonos": Sensor("IKONOS", 0.82, 3.2, "Maxar IKONOS data sheet"),
    # Airbus Pleiades / Pleiades Neo / SPOT 6-7 imagery user guides (delivered GSD)
    "pleiades": Sensor("Pleiades 1A/1B", 0.5, 2.0, "Airbus Pleiades Imagery User Guide"),
    "pleiades-neo": Sensor("Pleiades Neo", 0.3, 1.2, "Airbus Pleiades Neo user guide"),
    "spot-6": Sensor("SPOT 6", 1.5, 6.0, "Airbus SPOT 6/7 Imagery User Guide"),
    "spot-7": Sensor("SPOT 7", 1.5, 6.0, "Airbus SPOT 6/7 Imagery User Guide"),
    # CRESDA Gaofen satellite pages (GF-2 often quoted 1 m / 4 m after resampling)
    "gaofen-1": Sensor("Gaofen-1 PMS", 2.0, 8.0, "CRESDA GF-1 specifications"),
    "gaofen-1-wfv": Sensor("Gaofen-1 WFV", None, 16.0, "CRESDA GF-1 specifications"),
    "gaofen-2": Sensor("Gaofen-2 PMS", 0.8, 3.2, "CRESDA GF-2 specifications"),
    "gaofen-6": Sensor("Gaofen-6 PMS", 2.0, 8.0, "CRESDA GF-6 specifications"),
    # Chang Guang Satellite Jilin-1 high-resolution series: 0.5-0.75 m pan-sharpened
    "jilin-1": Sensor("Jilin-1 (high-resolution series)", 0.5, 0.75, "Chang Guang Jilin-1 pages"),
    # Planet imagery product specifications
    "planetscope": Sensor("PlanetScope", None, 3.0, "Planet Imagery Product Specifications"),
    "skysat": Sensor("SkySat (ortho)", None, 0.5, "Planet Imagery Product Specifications"),
    # NASA MODIS specifications: bands 1-2 at 250 m, 3-7 at 500 m, others 1 km
    "modis": Sensor("MODIS", 250.0, 1000.0, "NASA MODIS specifications"),
}

#: Dataset-level GSD for public datasets whose images carry no georeferencing.
#: (lo, hi) in metres; lo == hi means exact.
DATASETS: dict[str, tuple[float, float, str]] = {
    # RSVQA (Lobry et al. 2020): HR from USGS HRO at 0.15 m, LR from Sentinel-2 at 10 m
    "rsvqa-hr": (0.15, 0.15, "RSVQA-HR: USGS HRO 0.15 m (Lobry et al. 2020)"),
    "rsvqa-lr": (10.0, 10.0, "RSVQA-LR: Sentinel-2 10 m (Lobry et al. 2020)"),
    # RSVQAxBEN is built on BigEarthNet's Sentinel-2 10 m patches
    "rsvqa-xben": (10.0, 10.0, "RSVQAxBEN: BigEarthNet Sentinel-2 10 m"),
    # PatternNet (Zhou et al. 2018): 0.062-4.693 m depending on the class
    "patternnet": (0.062, 4.693, "PatternNet: 0.062-4.693 m by class (Zhou et al. 2018)"),
    # MtSCCD: 1.01 m (ScaleEarth sec. 2.3)
    "mtsccd": (1.01, 1.01, "MtSCCD: 1.01 m"),
}


def lookup_sensor(key: str) -> Sensor:
    """The table entry for a sensor key, with a "did you mean" on a miss.

    Raises:
        GSDError: If the key is not in :data:`SENSORS`.
    """
    k = key.strip().lower().replace("_", "-").replace(" ", "-")
    if k in SENSORS:
        return SENSORS[k]
    import difflib

    near = difflib.get_close_matches(k, SENSORS, n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise GSDError(f"unknown sensor {key!r}{hint} Known: {', '.join(sorted(SENSORS))}")


def dataset_gsd(key: str) -> GSD:
    """The dataset-level GSD of a known public dataset (exact or range).

    Raises:
        GSDError: If the dataset is not in :data:`DATASETS`.
    """
    k = key.strip().lower().replace("_", "-")
    if k not in DATASETS:
        raise GSDError(f"no dataset-level GSD for {key!r}; known: {', '.join(sorted(DATASETS))}")
    lo, hi, note = DATASETS[k]
    if lo == hi:
        return GSD.exact(lo, GSDSource.DATASET, note)
    return GSD.range(lo, hi, GSDSource.DATASET, note)


# -- file-name parsers ----------------------------------------------------------------

# Sentinel-2 10 / 20 / 60 m bands (ESA Sentinel-2 User Handbook, Table 1)
_S2_BAND_M = {
    "B01": 60.0, "B02": 10.0, "B03": 10.0, "B04": 10.0, "B05": 20.0, "B06": 20.0,
    "B07": 20.0, "B08": 10.0, "B8A": 20.0, "B09": 60.0, "B10": 60.0, "B11": 20.0,
    "B12": 20.0, "TCI": 10.0,
}  # fmt: skip

# Landsat Collection 2 band GSDs as delivered (thermal resampled to 30 m)
_LANDSAT_PAN_BAND = {"LC08": "B8", "LC09": "B8", "LO08": "B8", "LO09": "B8", "LE07": "B8"}
_LANDSAT_SENSOR = {
    "LC08": "landsat-8", "LO08": "landsat-8", "LT08": "landsat-8",
    "LC09": "landsat-9", "LO09": "landsat-9", "LT09": "landsat-9",
    "LE07": "landsat-7", "LT05": "landsat-5", "LT04": "landsat-4",
    "LM01": "landsat-mss", "LM02": "landsat-mss", "LM03": "landsat-mss",
    "LM04": "landsat-mss", "LM05": "landsat-mss",
}  # fmt: skip


@dataclass(frozen=True)
class NameMatch:
    """A sensor recognised in a file name, and the GSD it implies."""

    parser: str
    gsd: GSD


def _s2(name: str) -> GSD | None:
    if not re.search(r"(^|[^A-Z0-9])(S2[ABCD]_MSI|T\d{2}[A-Z]{3}_\d{8}T\d{6})", name):
        return None
    res = re.search(r"_(10|20|60)m(?![a-z])", name)
    if res:  # Level-2A resampled band files: T32TQM_..._B04_20m.jp2
        m = float(res.group(1))
        return GSD.exact(m, GSDSource.SENSOR_TABLE, f"Sentinel-2 L2A product at {res.group(1)} m")
    band = re.search(r"_(B0[1-9]|B1[0-2]|B8A|TCI)(?![A-Za-z0-9])", name)
    if band:
        b = band.group(1)
        return GSD.exact(_S2_BAND_M[b], GSDSource.SENSOR_TABLE, f"Sentinel-2 MSI band {b}")
    return GSD.range(
        10.0, 60.0, GSDSource.SENSOR_TABLE, "Sentinel-2 MSI product, band not stated (10-60 m)"
    )


def _hls(name: str) -> GSD | None:
    if re.search(r"(^|[^A-Za-z])HLS\.[LS]30\.", name):
        return SENSORS["hls"].gsd("ms", "HLS product")
    return None


def _landsat(name: str) -> GSD | None:
    m = re.search(r"(^|[^A-Z0-9])(L[COTEM]0[1-9])_L[12][A-Z]{2,3}_\d{6}_\d{8}", name)
    if not m:
        m = re.search(r"(^|[^A-Z0-9])(L[COTEM][0-9])\d{6}\d{7}[A-Z]{3}\d{2}", name)  # pre-C1 id
        if not m:
            return None
    code = m.group(2) if len(m.group(2)) == 4 else f"{m.group(2)[:2]}0{m.group(2)[2]}"
    key = _LANDSAT_SENSOR.get(code)
    if key is None:
        return None
    sensor = SENSORS[key]
    band = re.search(r"_(?:SR_|ST_)?B(\d{1,2})(?![0-9])", name, re.IGNORECASE)
    if band:
        is_pan = _LANDSAT_PAN_BAND.get(code) == f"B{band.group(1)}"
        return sensor.gsd("pan" if is_pan else "ms", f"{code} band B{band.group(1)}")
    return sensor.gsd(None, f"{code} product")


def _naip(name: str) -> GSD | None:
    # m_3807537_ne_18_060_20181104.tif: resolution field in cm (060) or metres (1)
    m = re.search(r"(^|[^a-z])m_\d{7}_(?:ne|nw|se|sw)_\d{2}_(\d{1,3})_\d{8}", name, re.I)
    if not m:
        return None
    code = m.group(2)
    gsd_m = float(code) / 100.0 if len(code) == 3 else float(code)
    return GSD.exact(gsd_m, GSDSource.SENSOR_TABLE, f"NAIP tile, resolution field {code!r}")


_VHR_PLATFORMS: tuple[tuple[str, str], ...] = (
    (r"WV0?1", "worldview-1"),
    (r"WV0?2", "worldview-2"),
    (r"WV0?3", "worldview-3"),
    (r"GE0?1", "geoeye-1"),
    (r"QB0?2", "quickbird"),
    (r"IK0?2", "ikonos"),
    (r"PHR1[AB]", "pleiades"),
    (r"PNEO\d?", "pleiades-neo"),
    (r"SPOT-?6", "spot-6"),
    (r"SPOT-?7", "spot-7"),
    (r"GF1_WFV\d?", "gaofen-1-wfv"),
    (r"GF-?1[BCD]?", "gaofen-1"),
    (r"GF-?2", "gaofen-2"),
    (r"GF-?6", "gaofen-6"),
    (r"JL1[A-Z0-9]*|JL10\d[A-Z]?", "jilin-1"),
)


def _vhr(name: str) -> GSD | None:
    upper = name.upper()
    for pattern, key in _VHR_PLATFORMS:
        if re.search(rf"(^|[^A-Z0-9])({pattern})(?=[^A-Z0-9]|$)", upper):
            return SENSORS[key].gsd(_vhr_band(upper), f"product name {key}")
    return None


_PAN_MARKS = re.compile(
    # Gaofen band suffix (-PAN2), Maxar P1BS/P2AS/P3DS, pan-sharpened PSH / Airbus PMS
    # (not Gaofen's camera name PMS1), Airbus _P_
    r"-PAN\d?(?![A-Z])|(?<![A-Z0-9])(P1BS|P2AS|P3DS|PAN|PSH|P|PMS)(?![A-Z0-9])"
)
_MS_MARKS = re.compile(r"-MSS\d?(?![A-Z])|(?<![A-Z0-9])(M1BS|M2AS|M3DS|MUL|MS|MSS)(?![A-Z0-9])")


def _vhr_band(upper: str) -> str | None:
    if _PAN_MARKS.search(upper):
        return "pan"
    if _MS_MARKS.search(upper):
        return "ms"
    return None


_NAME_PARSERS: tuple[tuple[str, Callable[[str], GSD | None]], ...] = (
    ("sentinel-2", _s2),
    ("hls", _hls),
    ("landsat", _landsat),
    ("naip", _naip),
    ("vhr", _vhr),
)


def parse_sensor_name(path: str | PurePath) -> NameMatch | None:
    """Recognise a sensor product in a file name (and its parent folders).

    Tries Sentinel-2 (products, band files, L2A ``_10m`` files, BigEarthNet patches),
    HLS, Landsat (Collection 1/2 IDs and older scene IDs, ``_B8`` pan), NAIP (the
    resolution field of the tile name), and VHR products (WorldView, GeoEye, QuickBird,
    IKONOS, Pleiades, Pleiades Neo, SPOT, Gaofen, Jilin).

    Returns:
        The match, or ``None`` when no parser recognises the name.
    """
    p = PurePath(path)
    # the file name first; then the folder names (a product folder holding band files)
    candidates = [p.name, *[part for part in reversed(p.parts[:-1])]]
    for candidate in candidates:
        for parser_name, parser in _NAME_PARSERS:
            gsd = parser(candidate)
            if gsd is not None:
                detail = f"name {candidate!r}: {gsd.detail}"
                return NameMatch(parser_name, GSD(gsd.kind, gsd.lo_m, gsd.hi_m, gsd.source, detail))
    return None


# -- DOTA label header ----------------------------------------------------------------


def parse_dota_header(text: str, *, where: str = "DOTA label") -> GSD | None:
    """The GSD from a DOTA label file's header (``gsd:0.146`` or ``gsd:null``).

    DOTA v1/v1.5/v2 label files may start with ``imagesource:...`` and ``gsd:...``
    lines. ``gsd:null`` (common) and a missing header give ``None``.

    Raises:
        GSDError: If the header holds a value that is not a valid GSD.
    """
    for line in text.splitlines()[:4]:
        key, sep, value = line.partition(":")
        if not sep or key.strip().lower() != "gsd":
            continue
        value = value.strip()
        if value.lower() in ("", "null", "none", "nan"):
            return None
        try:
            gsd_m = float(value)
        except ValueError:
            raise GSDError(f"{where}: header 'gsd:{value}' is not a number") from None
        return GSD.exact(gsd_m, GSDSource.METADATA, f"{where}: header gsd:{value}")
    return None
