"""Cold-process latency of `gpuplan params <preset> --json` (target: <= 0.3 s wall on a 2-core machine).

Run: python benchmarks/bench_params.py [--repeat 5]
"""

import argparse
import statistics
import subprocess
import sys
import time

PRESETS = ("llama-3.1-8b", "qwen2.5-72b", "mixtral-8x22b-v0.1", "deepseek-v3", "llama-3.1-405b")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"{'preset':<22} {'median s':>9} {'max s':>7}")
    for preset in PRESETS:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gpuplan", "params", preset, "--json"], check=True,
                           stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        print(f"{preset:<22} {statistics.median(times):>9.3f} {max(times):>7.3f}")


if __name__ == "__main__":
    main()
