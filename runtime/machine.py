"""What a measurement ran on, for provenance: CPU model and instruction-set flags, cores,
operating system, Keras backend and the device it computed on.

Training is deterministic on one machine, but floating-point paths differ between CPUs (oneDNN
picks kernels by instruction set) and devices, so a trained number is stored with the machine
it came from, and a re-run elsewhere is compared within seed noise (reproductions/trained.py).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# Instruction-set flags that change which kernels the libraries choose.
RELEVANT_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                  "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd", "sve")


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions, read from package metadata (no library is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        # TensorFlow's CPU build is the distribution tensorflow-cpu (still imported as tensorflow).
        for distribution in (name, f"{name}-cpu") if name == "tensorflow" else (name,):
            try:
                out[name] = version(distribution)
                break
            except PackageNotFoundError:
                out[name] = "not installed"
    return out


def cpu() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "Hardware") and value.strip():
                model = value.strip()
            elif key in ("flags", "Features"):
                flags.update(value.split())
    return {"model": model, "flags": sorted(f for f in flags if f in RELEVANT_FLAGS),
            "cores": os.cpu_count(), "architecture": platform.machine(), "system": platform.system()}


def device() -> str:
    """The device Keras computes on (e.g. "cpu", "gpu: NVIDIA H200"), without loading a
    backend that is not loaded yet."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        d = jax.devices()[0]
        return f"{d.platform}: {getattr(d, 'device_kind', d.platform)}"
    from runtime import backend

    tf = backend.tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return f"gpu: {name}" + (f" x{len(gpus)}" if len(gpus) > 1 else "")
    return "cpu"


def describe(with_device: bool = True) -> dict:
    """The machine as stored in provenance records."""
    import keras

    info = {"cpu": cpu(), "backend": keras.backend.backend()}
    if info["backend"] == "tensorflow":
        from runtime.known_problems import tensorflow_onednn_on

        # Its CPU kernels: oneDNN's (the default on x86) or TensorFlow's own (TF_ENABLE_ONEDNN_OPTS=0).
        info["onednn"] = tensorflow_onednn_on()
    if with_device:
        info["device"] = device()
    return info


def same_numerics(a: dict | None, b: dict | None) -> bool:
    """Whether two machine records would run the same floating-point paths (same CPU model,
    flags, backend and device); only then can trained numbers be expected to repeat exactly."""
    if not a or not b:
        return False
    keys = ("backend", "device", "onednn")
    return all(a.get(k) == b.get(k) for k in keys) and \
        (a.get("cpu", {}).get("model"), a.get("cpu", {}).get("flags")) == \
        (b.get("cpu", {}).get("model"), b.get("cpu", {}).get("flags"))


def summary(info: dict | None) -> str:
    """One line: "Intel Xeon ..., 2 cores (avx512f, amx_tile), tensorflow on cpu"."""
    if isinstance(info, str):  # already a summary (a committed result's)
        return info
    if not info:
        return "unknown machine"
    c = info.get("cpu", {})
    flags = ", ".join(c.get("flags", [])) or "no listed flags"
    kernels = " (oneDNN off)" if info.get("onednn") is False else ""
    return (f"{c.get('model', '?')}, {c.get('cores', '?')} cores ({flags}), "
            f"{info.get('backend', '?')}{kernels} on {info.get('device', '?')}")
