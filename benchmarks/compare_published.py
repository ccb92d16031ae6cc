"""Published training runs vs gpuplan's time model: GPU-hours from each run's own published throughput.

    python benchmarks/compare_published.py            # the table in docs/time-model.md
"""

from __future__ import annotations

from gpuplan.compute.published import RUNS, estimate_gpu_hours


def main() -> None:
    print("| run | tokens | GPU | throughput used | MFU (full attn) | estimated GPU-hours | published | error |"
          " error, causal attn | error, 6·P only |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in RUNS:
        hours, mfu = estimate_gpu_hours(run, "full")
        errs = [estimate_gpu_hours(run, a)[0] / run.published_gpu_hours - 1 for a in ("full", "causal", "none")]
        basis = {"tokens_per_s_per_gpu": f"{run.throughput:,.0f} tokens/s/GPU",
                 "flop_per_s_per_gpu": f"{run.throughput / 1e12:,.0f} TFLOP/s/GPU",
                 "mfu_of": f"MFU of LLaMA-65B ({run.throughput:,.0f} tokens/s/GPU)"}[run.throughput_basis]
        print(f"| {run.name} | {run.tokens / 1e12:g}T | {run.gpu} | {basis} | {mfu:.1%} | {hours:,.0f} |"
              f" {run.published_gpu_hours:,.0f} | {errs[0]:+.1%} | {errs[1]:+.1%} | {errs[2]:+.1%} |")


if __name__ == "__main__":
    main()
