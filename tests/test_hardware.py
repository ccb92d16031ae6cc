"""The hardware catalog: every entry is complete and plausible, anchor figures match datasheets, names resolve."""

import copy
import subprocess
import sys
import tomllib
from importlib import resources

import pytest

from gpuplan.errors import InputError
from gpuplan.hardware.catalog import CatalogError, GpuSpec, get_gpu, load_catalog, parse_catalog
from gpuplan.units import GB, MiB

CATALOG = load_catalog()
IDS = sorted(CATALOG)
T = 1e12

REQUIRED_IDS = {
    "a100-40gb", "a100-80gb", "a800", "h100-sxm", "h100-pcie", "h800", "h20", "h200", "b200", "gb200", "l40s",
    "a40", "l20", "rtx-4090", "rtx-3090", "v100-16gb", "v100-32gb", "t4", "ascend-910b", "mi300x", "mi325x",
    "rtx-5090", "rtx-4060-ti-16gb", "a10g", "rtx-a6000", "h100-nvl", "ascend-910c", "l4",
}


def _raw_catalog() -> dict:
    return tomllib.loads(resources.files("gpuplan").joinpath("data", "gpus.toml").read_text(encoding="utf-8"))


def test_catalog_has_required_gpus():
    assert REQUIRED_IDS <= set(CATALOG)


@pytest.mark.parametrize("gpu_id", IDS)
def test_entry_complete_and_positive(gpu_id):
    g = CATALOG[gpu_id]
    assert g.id == gpu_id and g.id == g.id.lower()
    for text in (g.name, g.vendor, g.interconnect, g.source, g.notes):
        assert isinstance(text, str) and text.strip()
    assert isinstance(g.aliases, tuple)
    for value in (g.memory_marketed_bytes, g.memory_usable_bytes):
        assert isinstance(value, int) and value > 0
    for value in (g.hbm_bandwidth_bytes_per_s, g.interconnect_bytes_per_s, g.tdp_w):
        assert value > 0
    assert g.peak_flop_per_s, "no throughput figures"
    assert set(g.peak_flop_per_s) <= {"fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4"}
    assert all(v > 0 for v in g.peak_flop_per_s.values())
    assert g.peak_flop_per_s_for("fp16") is not None


@pytest.mark.parametrize("gpu_id", IDS)
def test_usable_memory_close_to_marketed(gpu_id):
    g = CATALOG[gpu_id]
    # Usable can exceed marketed (vendors' HBM "GB" is physically GiB) but never by more than GiB/GB + slack;
    # the lower bound catches a MiB/GB mix-up.
    assert g.memory_usable_bytes <= 1.1 * g.memory_marketed_bytes
    assert g.memory_usable_bytes >= 0.9 * g.memory_marketed_bytes


@pytest.mark.parametrize("gpu_id", IDS)
def test_throughput_ordering(gpu_id):
    g = CATALOG[gpu_id]
    peaks = g.peak_flop_per_s
    if "bf16" in peaks and "fp8" in peaks:
        assert peaks["bf16"] <= peaks["fp8"]
    if "fp8" in peaks and "fp4" in peaks:
        assert peaks["fp8"] <= peaks["fp4"]
    if "fp32" in peaks:
        assert peaks["fp32"] <= peaks["fp16"]
    if "tf32" in peaks and "bf16" in peaks:
        assert peaks["tf32"] <= peaks["bf16"]
    assert g.interconnect_bytes_per_s < g.hbm_bandwidth_bytes_per_s


# (gpu id, attribute or dtype, expected value, relative tolerance)
SPOT_CHECKS = [
    ("a100-40gb", "bf16", 312 * T, 0.0),
    ("a100-40gb", "memory_usable_bytes", 40514 * MiB, 0.0),
    ("a100-40gb", "memory_nvidia_smi_bytes", 40960 * MiB, 0.0),
    ("a100-40gb", "hbm_bandwidth_bytes_per_s", 1555 * GB, 0.0),
    ("a100-80gb", "bf16", 312 * T, 0.0),
    ("a100-80gb", "memory_usable_bytes", 81153 * MiB, 0.0),
    ("a100-80gb", "memory_nvidia_smi_bytes", 81920 * MiB, 0.0),
    ("a100-80gb", "hbm_bandwidth_bytes_per_s", 2039 * GB, 0.0),
    ("a800", "interconnect_bytes_per_s", 200 * GB, 0.0),
    ("h100-sxm", "bf16", 989.4 * T, 0.005),
    ("h100-sxm", "fp8", 1978.9 * T, 0.005),
    ("h100-sxm", "memory_usable_bytes", 81089 * MiB, 0.0),
    ("h100-sxm", "memory_nvidia_smi_bytes", 81559 * MiB, 0.0),
    ("h100-sxm", "memory_marketed_bytes", 80 * GB, 0.0),
    ("h100-sxm", "hbm_bandwidth_bytes_per_s", 3350 * GB, 0.0),
    ("h100-sxm", "interconnect_bytes_per_s", 450 * GB, 0.0),
    ("h100-sxm", "tdp_w", 700, 0.0),
    ("h100-pcie", "bf16", 756 * T, 0.005),
    ("h100-pcie", "hbm_bandwidth_bytes_per_s", 2000 * GB, 0.0),
    ("h800", "bf16", 989.4 * T, 0.005),
    ("h800", "interconnect_bytes_per_s", 200 * GB, 0.0),
    ("h20", "bf16", 148 * T, 0.0),
    ("h20", "memory_marketed_bytes", 96 * GB, 0.0),
    ("h20", "hbm_bandwidth_bytes_per_s", 4000 * GB, 0.0),
    ("h200", "bf16", 989.4 * T, 0.005),
    ("h200", "memory_marketed_bytes", 141 * GB, 0.0),
    ("h200", "memory_usable_bytes", 143156 * MiB, 0.0),
    ("h200", "memory_nvidia_smi_bytes", 143771 * MiB, 0.0),
    ("h200", "hbm_bandwidth_bytes_per_s", 4800 * GB, 0.0),
    ("b200", "bf16", 2250 * T, 0.0),
    ("b200", "fp8", 4500 * T, 0.0),
    ("b200", "fp4", 9000 * T, 0.0),
    ("gb200", "bf16", 2500 * T, 0.0),
    ("rtx-4090", "memory_usable_bytes", 24209 * MiB, 0.0),
    ("rtx-4090", "memory_nvidia_smi_bytes", 24564 * MiB, 0.0),
    ("t4", "memory_usable_bytes", 15102 * MiB, 0.0),
    ("mi300x", "memory_usable_bytes", 196288 * MiB, 0.0),
    ("rtx-4090", "bf16", 165.2 * T, 0.0),
    ("ascend-910b", "fp16", 320 * T, 0.0),
    ("ascend-910b", "memory_marketed_bytes", 64 * GB, 0.0),
    ("mi300x", "bf16", 1307.4 * T, 0.005),
    ("mi300x", "memory_marketed_bytes", 192 * GB, 0.0),
    ("mi300x", "hbm_bandwidth_bytes_per_s", 5300 * GB, 0.0),
    ("mi325x", "memory_marketed_bytes", 256 * GB, 0.0),
    ("mi325x", "hbm_bandwidth_bytes_per_s", 6000 * GB, 0.0),
]


@pytest.mark.parametrize(("gpu_id", "what", "expected", "rel"), SPOT_CHECKS, ids=lambda v: str(v))
def test_spot_checks(gpu_id, what, expected, rel):
    g = CATALOG[gpu_id]
    actual = getattr(g, what) if hasattr(g, what) else g.peak_flop_per_s_for(what)
    assert actual == pytest.approx(expected, rel=rel, abs=0)


@pytest.mark.parametrize("gpu_id", IDS)
def test_cuda_total_within_driver_reservation_of_nvidia_smi(gpu_id):
    # The CUDA runtime total is nvidia-smi's Total less a driver reservation of a few hundred MiB (0-2.1 % in the
    # public logs, largest on small GDDR cards); a gap of 3 % or more would mean the two figures are for different
    # SKUs or ECC modes (ECC on GDDR costs 1/16 = 6.25 %) or units.
    g = CATALOG[gpu_id]
    if g.memory_nvidia_smi_bytes is None:
        assert g.vendor != "NVIDIA", "NVIDIA entries record the nvidia-smi figure"
        return
    assert g.memory_usable_bytes <= g.memory_nvidia_smi_bytes < 1.03 * g.memory_usable_bytes


@pytest.mark.parametrize(("derived", "base"), [("h800", "h100-sxm"), ("h200", "h100-sxm"), ("a800", "a100-80gb"),
                                               ("mi325x", "mi300x")])
def test_same_silicon_same_compute(derived, base):
    assert CATALOG[derived].peak_flop_per_s == CATALOG[base].peak_flop_per_s


def test_unsupported_dtypes_are_unknown_not_guessed():
    assert get_gpu("v100-16gb").peak_flop_per_s_for("bf16") is None
    assert get_gpu("t4").peak_flop_per_s_for("bf16") is None
    assert get_gpu("a100-80gb").peak_flop_per_s_for("fp8") is None
    assert get_gpu("h100-sxm").peak_flop_per_s_for("fp4") is None
    assert get_gpu("h100-sxm").peak_flop_per_s_for("fp64") is None
    assert get_gpu("h100-sxm").peak_flop_per_s_for("BFloat16") == get_gpu("h100-sxm").peak_flop_per_s["bf16"]


@pytest.mark.parametrize(("name", "gpu_id"), [
    ("h100", "h100-sxm"), ("H100-SXM5-80GB", "h100-sxm"), ("H100 SXM", "h100-sxm"), ("h100_sxm", "h100-sxm"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("  H100-PCIE ", "h100-pcie"), ("A100-SXM4-40GB", "a100-40gb"),
    ("a100", "a100-80gb"), ("RTX 4090", "rtx-4090"), ("NVIDIA GeForce RTX 3090", "rtx-3090"), ("Tesla T4", "t4"),
    ("v100", "v100-16gb"), ("910B", "ascend-910b"), ("AMD Instinct MI300X", "mi300x"), ("MI325X", "mi325x"),
    ("GB200", "gb200"), ("NVIDIA B200", "b200"),
])
def test_alias_resolution(name, gpu_id):
    assert get_gpu(name).id == gpu_id
    assert get_gpu(name) is CATALOG[gpu_id]


@pytest.mark.parametrize("gpu_id", IDS)
def test_every_alias_resolves_to_its_entry(gpu_id):
    for alias in (gpu_id, gpu_id.upper(), *CATALOG[gpu_id].aliases):
        assert get_gpu(alias).id == gpu_id


def test_unknown_gpu_names_closest_match():
    with pytest.raises(InputError) as info:
        get_gpu("h100-sxn")
    err = info.value
    assert err.field == "gpu" and err.value == "h100-sxn" and err.rule == "unknown GPU"
    assert err.hint is not None and err.hint.startswith("closest:") and "h100-sxm" in err.hint


def test_unknown_gpu_without_close_match_lists_known_ids():
    with pytest.raises(InputError) as info:
        get_gpu("zzzzzz")
    assert "h100-sxm" in info.value.hint


def test_catalog_is_cached_and_spec_is_frozen_and_hashable():
    assert load_catalog() is CATALOG
    g = CATALOG["h100-sxm"]
    assert isinstance(g, GpuSpec)
    with pytest.raises(AttributeError):
        g.tdp_w = 1.0  # type: ignore[misc]
    assert len({g, CATALOG["h200"], g}) == 2


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda e: e.pop("tdp_W"), "missing required key 'tdp_W'"),
    (lambda e: e.pop("source"), "missing required key 'source'"),
    (lambda e: e.pop("inter_node_GBps"), "missing required key 'inter_node_GBps'"),
    (lambda e: e.pop("gpus_per_node"), "missing required key 'gpus_per_node'"),
    (lambda e: e.update(gpus_per_node=7.5), "'gpus_per_node' must be a whole number"),
    (lambda e: e.update(bf16_fallback="fp16"), "'bf16_fallback' ('fp16') is only for a part without a bf16"),
    (lambda e: e.update(hbm_bandwidth_GBps=0), "'hbm_bandwidth_GBps' must be a positive number"),
    (lambda e: e.update(bf16_TFLOPs=-1.0), "'bf16_TFLOPs' must be a positive number"),
    (lambda e: e.update(memory_usable_MiB="80GB"), "'memory_usable_MiB' must be a positive number"),
    (lambda e: e.update(bf16_TFLOPS=1.0), "unknown key(s) ['bf16_TFLOPS']"),
    (lambda e: e.update(aliases="h100"), "'aliases' must be a list"),
    (lambda e: e.update(memory_nvidia_smi_MiB=0), "'memory_nvidia_smi_MiB' must be a positive number"),
    (lambda e: e.update(memory_nvidia_smi_MiB=81000), "'memory_nvidia_smi_MiB' (81000) is below 'memory_usable_MiB'"),
])
def test_validation_names_gpu_and_key(mutate, message):
    data = copy.deepcopy(_raw_catalog())
    entry = next(e for e in data["gpu"] if e["id"] == "h100-sxm")
    mutate(entry)
    with pytest.raises(CatalogError) as info:
        parse_catalog(data)
    assert "'h100-sxm'" in str(info.value) and message in str(info.value)


def test_nvidia_smi_figure_is_optional():
    data = copy.deepcopy(_raw_catalog())
    entry = next(e for e in data["gpu"] if e["id"] == "h100-sxm")
    del entry["memory_nvidia_smi_MiB"]
    spec = parse_catalog(data)["h100-sxm"]
    assert spec.memory_nvidia_smi_bytes is None and spec.memory_usable_bytes == 81089 * MiB


def test_validation_rejects_duplicate_names():
    data = copy.deepcopy(_raw_catalog())
    entry = next(e for e in data["gpu"] if e["id"] == "h200")
    entry["aliases"].append("H100")
    with pytest.raises(CatalogError, match="'H100' already used by 'h100-sxm'"):
        parse_catalog(data)
    data = copy.deepcopy(_raw_catalog())
    data["gpu"].append(copy.deepcopy(data["gpu"][0]))
    with pytest.raises(CatalogError, match="already used"):
        parse_catalog(data)


def test_core_import_pulls_no_numpy_or_torch():
    code = ("import sys, gpuplan.hardware.catalog as c; c.load_catalog(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("gpu_id", IDS)
def test_every_gpu_has_what_the_planner_needs(gpu_id):
    """A network default for its system, a node size, and a dtype to train bf16 models in (its own bf16, or the
    fp16 fallback of parts without bf16 units)."""
    g = CATALOG[gpu_id]
    assert g.inter_node_bytes_per_s and 0 < g.inter_node_bytes_per_s <= g.interconnect_bytes_per_s * 100
    assert g.inter_node_source.strip()
    assert isinstance(g.gpus_per_node, int) and g.gpus_per_node >= 1
    dtype = g.compute_dtype("bf16")
    assert g.peak_flop_per_s_for(dtype), f"{gpu_id}: no peak for bf16 training ({dtype})"
    assert (dtype == "bf16") == (g.peak_flop_per_s_for("bf16") is not None)


def test_bf16_falls_back_to_fp16_only_without_bf16_units():
    assert get_gpu("v100-32gb").compute_dtype("bf16") == "fp16"
    assert get_gpu("t4").compute_dtype("bfloat16") == "fp16"
    assert get_gpu("h100-sxm").compute_dtype("bf16") == "bf16"
    assert get_gpu("v100-32gb").compute_dtype("fp8") == "fp8"  # only bf16 falls back


@pytest.mark.parametrize(("gpu_id", "what", "expected"), [
    ("rtx-5090", "memory_marketed_bytes", 32 * GB), ("rtx-5090", "hbm_bandwidth_bytes_per_s", 1792 * GB),
    ("rtx-4060-ti-16gb", "memory_marketed_bytes", 16 * GB), ("rtx-4060-ti-16gb", "hbm_bandwidth_bytes_per_s", 288 * GB),
    ("a10g", "hbm_bandwidth_bytes_per_s", 600 * GB), ("rtx-a6000", "memory_marketed_bytes", 48 * GB),
    ("rtx-a6000", "hbm_bandwidth_bytes_per_s", 768 * GB), ("ascend-910c", "memory_marketed_bytes", 128 * GB),
])
def test_new_entries_match_their_datasheets(gpu_id, what, expected):
    assert getattr(CATALOG[gpu_id], what) == pytest.approx(expected)


@pytest.mark.parametrize("gpu_id", ["rtx-5090", "rtx-4060-ti-16gb", "a10g", "rtx-a6000", "ascend-910c"])
def test_new_entries_cite_a_dated_source(gpu_id):
    g = CATALOG[gpu_id]
    assert "http" in g.source and g.source_date[:2] == "20"


@pytest.mark.parametrize(("name", "gpu_id"), [("RTX 5090", "rtx-5090"), ("4060 Ti", "rtx-4060-ti-16gb"),
                                              ("A10G", "a10g"), ("RTX A6000", "rtx-a6000"), ("910C", "ascend-910c"),
                                              ("H100 NVL 96GB", "h100-nvl"), ("h100-nvl-94gb", "h100-nvl")])
def test_new_names_resolve(name, gpu_id):
    assert get_gpu(name).id == gpu_id


def test_gpus_command_lists_every_entry():
    import contextlib
    import io
    import json

    from gpuplan.cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["gpus", "--json"]) == 0
    listed = {g["id"]: g for g in json.loads(buf.getvalue())}
    assert set(listed) == set(IDS)
    assert listed["v100-32gb"]["bf16_fallback"] == "fp16" and listed["gb200"]["gpus_per_node"] == 72
    assert listed["h100-sxm"]["inter_node_bytes_per_s"] == 50 * GB


def test_a_missing_catalog_field_is_named_in_the_planners_error():
    """The planner's errors about a figure the user did not give name the catalog field that lacks it."""
    from dataclasses import replace

    from gpuplan.compute.comm import default_network
    from gpuplan.compute.steptime import make_device

    no_network = replace(get_gpu("l40s"), inter_node_bytes_per_s=None)
    with pytest.raises(InputError, match="inter_node_GBps"):
        default_network(no_network)
    assert default_network(no_network, single_node=True).inter_node_bytes_per_s > 0
    no_fallback = replace(get_gpu("v100-32gb"), bf16_fallback=None)
    with pytest.raises(InputError, match="bf16_TFLOPs"):
        make_device(no_fallback, "bf16")
    dev, sources = make_device(get_gpu("v100-32gb"), "bf16")
    assert dev.peak_flop_per_s == 125e12 and "bf16_fallback" in sources[0]


@pytest.mark.parametrize("gpus", [1, 64])
@pytest.mark.parametrize("gpu_id", IDS)
def test_plan_answers_on_every_catalog_gpu(gpu_id, gpus):
    """`gpuplan plan` for a 7B model gives some plan, or the clear "no layout fits" verdict, on every GPU of the
    catalog at 1 and 64 GPUs; never an error about a figure the user did not give."""
    import contextlib
    import io
    import json

    from gpuplan.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["plan", "llama-2-7b-hf", "--gpu", gpu_id, "--gpus", str(gpus), "--top", "1", "--json"])
    payload = json.loads(out.getvalue()) if out.getvalue().strip() else {}
    if rc == 0:
        assert payload["plans"], err.getvalue()
    else:
        assert rc == 2 and payload.get("plans") == [] and "no layout of" in payload.get("reason", ""), err.getvalue()


def test_network_defaults_agree_with_the_server_catalog():
    """Where data/systems.toml has the server a GPU is bought in, the catalog's node size and per-GPU network are
    that server's (compute NICs x line rate / GPUs), so plan and --cluster describe the same machine."""
    from gpuplan.hardware.systems import load_systems

    systems = load_systems()
    assert systems
    for gpu_id, server in systems.items():
        g = CATALOG[gpu_id]
        assert g.gpus_per_node == server.gpus_per_node, gpu_id
        per_gpu = server.nics_per_node * server.nic_bits_per_s / 8 / server.gpus_per_node
        assert g.inter_node_bytes_per_s == pytest.approx(per_gpu), gpu_id
