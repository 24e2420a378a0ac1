"""Peak memory of building and counting the largest presets, against the 8 GiB goal (issue #3).

Each build runs in a fresh process so peaks do not mix; prints peak resident memory and its
ratio to the budget, and the ratio of a counting build (weights deferred) to an eager one.

    .venv/bin/python benchmarks/build_memory.py
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_GIB = 8.0
CHILD = """
import resource, sys
from runtime import backend
backend.choose()
import keras
from models import counting, presets
preset = presets.get(sys.argv[1])
if sys.argv[2] == "count":
    counting.count_preset(preset)
else:
    counting.count(preset.build())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_gib(preset: str, mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, preset, mode], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 2**20  # ru_maxrss is in KiB on Linux


def main():
    print(f"{'preset':32s} {'mode':6s} {'peak GiB':>9s} {'of budget':>10s}")
    results = {}
    for preset in ("axial-deeplab-l-cityscapes", "axial-deeplab-xl-cityscapes"):
        for mode in ("count", "eager"):
            gib = results[preset, mode] = peak_gib(preset, mode)
            print(f"{preset:32s} {mode:6s} {gib:9.2f} {gib / BUDGET_GIB:9.0%}")
    xl = "axial-deeplab-xl-cityscapes"
    print(f"XL counting build / eager build: {results[xl, 'count'] / results[xl, 'eager']:.2f}")


if __name__ == "__main__":
    main()
