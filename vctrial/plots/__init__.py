"""Figures from a results Dataset, chosen by what it holds (``ds.attrs["kind"]``).

Each kind has a module exposing ``figures(ds) -> dict[str, Figure]``; ``save_figures`` writes them as
PNG files. Figures are built with matplotlib's object API (no global pyplot state), so they work
headless and in notebooks alike.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import xarray as xr
from matplotlib.figure import Figure

KINDS = {"trial": "vctrial.plots.trial", "twin": "vctrial.plots.twin", "population": "vctrial.plots.population",
         "validation": "vctrial.plots.study", "calibration": "vctrial.plots.study"}


def figures(ds: xr.Dataset) -> dict[str, Figure]:
    """All figures that apply to a results Dataset, by name."""
    kind = ds.attrs.get("kind")
    if kind not in KINDS:
        raise ValueError(f"no figures for a Dataset of kind {kind!r} (known: {', '.join(KINDS)})")
    return importlib.import_module(KINDS[kind]).figures(ds)


def save_figures(ds: xr.Dataset, out_dir: str | Path, dpi: int = 110) -> list[Path]:
    """Write every figure of ``ds`` as ``out_dir/<name>.png``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures(ds).items():
        path = out / f"{name}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, dpi=dpi, format="png")
        tmp.replace(path)
        paths.append(path)
    return paths
