"""Library bugs this suite's models can hit, found before training starts rather than after.

oneDNN's 1x1 convolution, backward by weights (TensorFlow's CPU kernels when oneDNN is on, its
default on x86): with a stride above 1 and fewer input channels than the kernel's channel block
(8 with AVX2, 16 with AVX-512), it writes past a workspace it allocated, uxlfoundation/oneDNN
issue 6035.  Depending on the machine, TensorFlow 2.21 then aborts (glibc "corrupted size" or
a segmentation fault, on this suite's 2-core Xeon at 56 px and above), hangs, or returns wrong
weight gradients without a word.  The Full Axial-ResNets hit it: the first block of the axial
stem (Sec. 3.2) has a strided 1x1 shortcut on the 3-channel image.  Inference is unaffected, and
so are JAX (XLA's own kernels) and TensorFlow with `TF_ENABLE_ONEDNN_OPTS=0`.

Rather than risk silently wrong training, the training fidelities refuse such a model under
TensorFlow with oneDNN on a CPU, with a one-line error naming both ways round it.
"""

from __future__ import annotations

import os

ONEDNN_ISSUE = "https://github.com/uxlfoundation/oneDNN/issues/6035"
# The widest channel block oneDNN's x86 1x1 kernels use (AVX-512); AVX2's is 8.
ONEDNN_CHANNEL_BLOCK = 16


def tensorflow_onednn_on() -> bool:
    """Whether TensorFlow is this process's Keras backend and runs its CPU ops through oneDNN."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    try:  # TensorFlow's own answer (it reads TF_ENABLE_ONEDNN_OPTS and the platform's default)
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


def onednn_bug_can_strike() -> bool:
    """Whether this process trains through TensorFlow's oneDNN CPU kernels: TensorFlow with oneDNN
    on and no GPU or TPU (there the convolutions are cuDNN's or XLA's)."""
    if not tensorflow_onednn_on():
        return False
    from runtime import backend

    config = backend.tensorflow().config
    return not (config.list_physical_devices("GPU") or config.list_physical_devices("TPU"))


def strided_pointwise_convolutions(model) -> list[str]:
    """Names of `model`'s 1x1 convolutions with a stride and fewer input channels than a oneDNN
    channel block: the layers whose weight gradient oneDNN issue 6035 corrupts."""
    import keras

    found = []
    for layer in model._flatten_layers(include_self=False):
        if (isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1)
                and max(layer.strides) > 1 and layer.kernel.shape[2] < ONEDNN_CHANNEL_BLOCK):
            found.append(layer.name)
    return found


def training_refusal(model) -> str | None:
    """Why `model` must not be trained in this process (None: it may)."""
    if not onednn_bug_can_strike():
        return None
    layers = strided_pointwise_convolutions(model)
    if not layers:
        return None
    return (f"TensorFlow with oneDNN cannot train layer {layers[0]}: its weight gradient (a strided 1x1 "
            f"convolution on fewer than {ONEDNN_CHANNEL_BLOCK} channels) aborts or comes out wrong, "
            f"{ONEDNN_ISSUE}; train it with --backend jax, or with TF_ENABLE_ONEDNN_OPTS=0")
