"""Charts: the files are valid PNG/SVG of the expected size (not pixel comparisons)."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("matplotlib")

from gpuplan.errors import InputError  # noqa: E402
from gpuplan.plot import DPI, FIGSIZE_IN, check_plot_path, plot_breakdown, plot_sweep  # noqa: E402
from gpuplan.units import GiB  # noqa: E402

EXPECTED_PX = (int(FIGSIZE_IN[0] * DPI), int(FIGSIZE_IN[1] * DPI))
EXPECTED_PT = (f"{FIGSIZE_IN[0] * 72:g}pt", f"{FIGSIZE_IN[1] * 72:g}pt")

MEMORY = {"weights_bytes": 16 * GiB, "gradients_bytes": 16 * GiB, "optimizer_bytes": 64 * GiB,
          "master_weights_bytes": 0, "activations_bytes": 12 * GiB, "logits_bytes": 4 * GiB, "kv_cache_bytes": 0,
          "buffers_bytes": GiB // 2, "allocated_peak_bytes": 110 * GiB, "total_bytes": 113 * GiB}


def png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    assert data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"), "truncated PNG"
    return struct.unpack(">II", data[16:24])


def svg_size(path) -> tuple[str, str]:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return root.get("width"), root.get("height")


def test_breakdown_png(tmp_path):
    out = plot_breakdown(MEMORY, tmp_path / "b.png", model="m", capacity_bytes=80 * GiB, gpu="h100-sxm")
    assert png_size(out) == EXPECTED_PX
    assert out.stat().st_size > 5000  # bars, labels and lines drawn, not an empty canvas


def test_breakdown_svg_has_the_labels(tmp_path):
    out = plot_breakdown(MEMORY, tmp_path / "b.svg", model="m", capacity_bytes=80 * GiB, gpu="h100-sxm")
    assert svg_size(out) == EXPECTED_PT
    text = out.read_text()
    for label in ("optimizer states", "activations", "h100-sxm capacity"):
        assert label in text


def test_sweep_png_and_svg(tmp_path):
    rows = [{k: v * x for k, v in MEMORY.items()} for x in (1, 2, 4)] + [None]  # an error point is a gap
    png = plot_sweep([1, 2, 4, 8], rows, tmp_path / "s.png", over="batch", model="m", capacity_bytes=200 * GiB)
    assert png_size(png) == EXPECTED_PX
    svg = plot_sweep([1, 2, 4, 8], rows, tmp_path / "s.svg", over="seq", model="m", lang="zh")
    assert svg_size(svg) == EXPECTED_PT


def test_plot_path_is_checked_first(tmp_path):
    with pytest.raises(InputError, match=r"\.png or \.svg"):
        check_plot_path(tmp_path / "x.jpg")
    with pytest.raises(InputError, match="does not exist"):
        check_plot_path(tmp_path / "missing" / "x.png")
