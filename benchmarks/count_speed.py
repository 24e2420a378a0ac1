"""Build-and-count time of every ImageNet preset, as a ratio to ResNet-50 in the same run.

    .venv/bin/python benchmarks/count_speed.py
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime import backend  # noqa: E402

backend.choose()  # KERAS_BACKEND or tensorflow; the libraries' start-up notices kept off the terminal

import keras  # noqa: E402

from models import counting, presets  # noqa: E402


def timed(name: str) -> float:
    keras.backend.clear_session()
    start = time.perf_counter()
    counting.count_preset(presets.get(name))
    return time.perf_counter() - start


def main():
    timed("resnet50")  # warm-up: imports and graph machinery
    base = timed("resnet50")
    total = 0.0
    print(f"{'preset':36s} {'seconds':>8s} {'x resnet50':>10s}")
    for name in sorted(presets.PRESETS):
        t = timed(name)
        total += t
        print(f"{name:36s} {t:8.2f} {t / base:10.2f}")
    print(f"all {len(presets.PRESETS)} presets: {total:.1f} s ({total / base:.1f} x one ResNet-50)")


if __name__ == "__main__":
    main()
