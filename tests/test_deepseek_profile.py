"""benchmarks/deepseek_profile.py: the FP8 kernel model against DeepSeek's published training profile of
DeepSeek-V3 (the summary in benchmarks/results), the efficiencies it gives, and the docs table it prints."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from gpuplan.compute.kernels import FP8_CAST_BYTES_PER_ELEM, FP8_GEMM_EFFICIENCY, FP8_WGRAD_EFFICIENCY, fp8_cast_bytes

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("deepseek_profile")
SUMMARY = json.loads(bench.SUMMARY.read_text())


@pytest.mark.parametrize("name, kind", [
    ("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::fp8_dptp128c_acc::GemmKernel>", "gemm_wgrad"),
    ("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::m_grouped_fp8_ptp128c::GemmKernel>", "gemm_fwd_dgrad"),
    ("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::fp8_ptp128c::GemmKernel>", "gemm_fwd_dgrad"),
    ("sm90_xmma_gemm_bf16f32_bf16f32_f32_tn_n_tilesize128x128x64", "gemm_bf16"),
    ("void dpsk::ep::internode::combine<false, 8, __nv_bfloat16, 8, 2, 16, 24>", "all_to_all"),
    ("void cutlass::device_kernel<flash::FlashAttnBwd<flash::CollectiveMainloopBwd<2>>>", "attention"),
    ("void cuda::per_token_cast_to_fp8_with_channels<__nv_bfloat16, 128, false, 128, false>", "fp8_cast"),
    ("void cuda::per_channel_cast_and_transpose<256, 128, true, true, true, false, true>", "fp8_cast"),
    ("void layer_norm::ln_fwd_kernel<layer_norm::Kernel_traits<__nv_bfloat16>>", "other"),
])
def test_kernels_are_sorted_by_their_names(name, kind):
    assert bench.kind_of(name) == kind


def test_the_fp8_efficiencies_are_the_ones_the_profile_gives():
    fwd_dgrad, wgrad = bench.efficiencies(SUMMARY)
    assert FP8_GEMM_EFFICIENCY["hopper-sxm"][0] == pytest.approx(fwd_dgrad, abs=5e-4)
    assert FP8_WGRAD_EFFICIENCY["hopper-sxm"][0] == pytest.approx(wgrad, abs=5e-4)
    assert wgrad < fwd_dgrad  # accumulating into the FP32 gradient costs the weight-gradient kernels


def test_the_layer_model_lands_on_the_profile():
    # what the efficiencies do not fix: attention, the quantization kernels and the rest of the elementwise work
    measured, model = bench.compute_total(bench.rows(SUMMARY))
    assert model == pytest.approx(measured, rel=0.05)
    by_kind = {label: (meas, mod) for label, meas, mod in bench.rows(SUMMARY)}
    meas, mod = by_kind[bench.LABELS["fp8_cast"]]
    assert mod == pytest.approx(meas, rel=0.3)


def test_cast_bytes_count_inputs_forward_and_both_operands_backward():
    fwd, bwd = fp8_cast_bytes([(10, 4, 3, 1), (5, 2, 8, 2)])
    assert fwd == (10 * 3 + 2 * 5 * 8) * FP8_CAST_BYTES_PER_ELEM
    assert bwd == (10 * (2 * 4 + 3) + 2 * 5 * (2 * 2 + 8)) * FP8_CAST_BYTES_PER_ELEM


def test_the_docs_table_is_what_the_script_prints():
    doc = (ROOT / "docs" / "time-model.md").read_text(encoding="utf-8")
    inside = doc.split("<!-- deepseek_profile:begin -->\n", 1)[1].split("<!-- deepseek_profile:end -->", 1)[0]
    assert inside.strip() == bench.render(SUMMARY, markdown=True).strip()


def test_deepseek_v3_gpu_hours_with_its_schedule_and_fp8():
    # DeepSeek-V3 report (arXiv:2412.19437) Table 1: 2,664K H800 GPU-hours of pre-training on 14.8T tokens
    published = _load("published_time")
    row = published.deepseek_row()
    assert abs(row.error_pct) <= 15.0
