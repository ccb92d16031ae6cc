"""Charts with matplotlib (extra ``[plot]``), imported only when a chart is asked for; Agg backend, no display.

- :func:`plot_breakdown`: one workload's memory components as bars, with the allocated peak, the device total
  and the GPU's usable capacity as vertical lines (``train --plot``, ``infer --plot``).
- :func:`plot_sweep`: each component and the device total against a swept value, with the capacity line
  (``gpuplan sweep --plot``).

Components are sizes, not slices of the peak (they do not all live at once), so they are drawn side by side and the
peak/total as their own lines, never as a stacked sum. Memory is in GiB. Files are ``.png`` (100 dpi) or ``.svg``;
the figure is :data:`FIGSIZE_IN` inches, i.e. 800 x 450 px as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from gpuplan.errors import InputError
from gpuplan.i18n import memory_label, normalize_lang, t
from gpuplan.units import GiB

FIGSIZE_IN = (8.0, 4.5)
DPI = 100
FORMATS = (".png", ".svg")
COMPONENT_KEYS = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "master_weights_bytes",
                  "activations_bytes", "logits_bytes", "kv_cache_bytes", "buffers_bytes")
_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
              "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "AR PL UMing CN")


def check_plot_path(path: str | Path, field: str = "--plot") -> Path:
    """Validate the output file name before any work: a known suffix and an existing folder."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in FORMATS:
        raise InputError(field, str(path), "must end in .png or .svg")
    if not p.parent.exists():
        raise InputError(field, str(path), f"folder {str(p.parent)!r} does not exist")
    return p


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise InputError("--plot", None, "needs matplotlib", hint="pip install 'gpuplan[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _chart_lang(lang: str | None) -> str:
    """Chinese labels only when a CJK font is installed; otherwise English (boxes are worse than English)."""
    if normalize_lang(lang) != "zh":
        return "en"
    from matplotlib import font_manager, rcParams

    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = [name for name in _CJK_FONTS if name in installed]
    if not found:
        return "en"
    rcParams["font.sans-serif"] = found + list(rcParams["font.sans-serif"])
    rcParams["axes.unicode_minus"] = False
    return "zh"


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format=path.suffix.lower()[1:], dpi=DPI)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_breakdown(memory: Mapping[str, int], path: str | Path, *, model: str = "",
                   capacity_bytes: int | None = None, gpu: str | None = None, lang: str | None = None) -> Path:
    """Bar per non-zero component (GiB) plus lines at the allocated peak, the device total and the capacity."""
    out = check_plot_path(path)
    plt = _pyplot()
    lang = _chart_lang(lang)
    keys = [k for k in COMPONENT_KEYS if memory.get(k)]
    labels = [memory_label(k, lang) for k in keys]
    values = [memory[k] / GiB for k in keys]
    fig, ax = plt.subplots(figsize=FIGSIZE_IN)
    bars = ax.barh(range(len(keys)), values, color="#4C72B0")
    ax.set_yticks(range(len(keys)), labels)
    ax.invert_yaxis()
    for bar, v in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,.1f}", va="center", fontsize=8)
    lines = [("allocated_peak_bytes", t("plot.peak", lang), "#DD8452", "-"),
             ("total_bytes", t("plot.total", lang), "#C44E52", "-")]
    for key, label, color, style in lines:
        if memory.get(key):
            ax.axvline(memory[key] / GiB, color=color, linestyle=style, label=f"{label}: {memory[key] / GiB:,.1f}")
    if capacity_bytes:
        ax.axvline(capacity_bytes / GiB, color="black", linestyle="--",
                   label=f"{t('sweep.capacity', lang, gpu=gpu or 'GPU')}: {capacity_bytes / GiB:,.1f}")
    ax.set_xlabel(t("sweep.memory_axis", lang))
    ax.set_title(t("plot.breakdown_title", lang, model=model).lstrip(": "), fontsize=11)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def plot_sweep(xs: Sequence[float], rows: Sequence[Mapping[str, int] | None], path: str | Path, *,
               over: str, model: str = "", capacity_bytes: int | None = None, gpu: str | None = None,
               lang: str | None = None, log_x: bool | None = None) -> Path:
    """Lines of each component and of ``total_bytes`` (GiB) against ``xs``; ``None`` rows (errors) are gaps."""
    out = check_plot_path(path)
    if not xs:
        raise InputError("--values", list(xs), "nothing to plot")
    plt = _pyplot()
    lang = _chart_lang(lang)
    fig, ax = plt.subplots(figsize=FIGSIZE_IN)

    def series(key: str) -> list[float]:
        return [float("nan") if r is None else r.get(key, 0) / GiB for r in rows]

    for key in COMPONENT_KEYS:
        if any(r is not None and r.get(key) for r in rows):
            ax.plot(xs, series(key), marker="o", markersize=3, linewidth=1.2, label=memory_label(key, lang))
    ax.plot(xs, series("total_bytes"), marker="o", color="black", linewidth=2.2,
            label=memory_label("total_bytes", lang))
    if capacity_bytes:
        ax.axhline(capacity_bytes / GiB, color="#C44E52", linestyle="--", linewidth=1.5,
                   label=f"{t('sweep.capacity', lang, gpu=gpu or 'GPU')}: {capacity_bytes / GiB:,.1f}")
    if log_x is None:
        positive = [x for x in xs if x > 0]
        log_x = len(positive) == len(xs) and len(xs) > 2 and max(positive) / min(positive) >= 16
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set_xticks(list(xs), [f"{x:g}" for x in xs])
    ax.minorticks_off()
    xlabel = t(f"sweep.over.{over}", lang)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(t("sweep.memory_axis", lang))
    tops = [v for key in (*COMPONENT_KEYS, "total_bytes") for v in series(key) if v == v]
    if capacity_bytes:
        tops.append(capacity_bytes / GiB)
    ax.set_ylim(0, 1.45 * max(tops + [1e-9]))  # room above the data for the legend
    ax.set_title(t("sweep.title", lang, model=model, over=xlabel).lstrip(": "), fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncols=2)
    fig.tight_layout()
    return _save(fig, out)


def add_plot_argument(parser: Any) -> None:
    """``--plot FILE.png|.svg`` for ``train`` and ``infer``: the memory breakdown chart."""
    parser.add_argument("--plot", metavar="FILE", help="also draw the memory breakdown to FILE.png or FILE.svg "
                                                       "(needs matplotlib: pip install 'gpuplan[plot]')")


def plot_payload(args: Any, payload: Mapping[str, Any]) -> Path | None:
    """With ``--plot``: draw ``payload["memory"]`` (a train/infer JSON payload) against the GPU's capacity."""
    path = getattr(args, "plot", None)
    if not path:
        return None
    capacity = payload.get("capacity_bytes")
    gpu = getattr(args, "gpu", None)
    if capacity is None and gpu:
        from gpuplan.hardware.catalog import get_gpu

        capacity = get_gpu(gpu).memory_usable_bytes
    from gpuplan.i18n import lang_of

    return plot_breakdown(payload["memory"], path, model=getattr(args, "model", None) or "", capacity_bytes=capacity,
                          gpu=gpu, lang=lang_of(args))
