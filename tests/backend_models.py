"""The models both backends must agree on (tests/test_backends.py): every attention layer and a
tiny model of every family, built the same way in a TensorFlow and a JAX process.

Run as `python tests/backend_models.py DIR` (KERAS_BACKEND picks the backend): for each model,
loads DIR/<name>.weights.h5 and DIR/inputs.npz, and writes DIR/<backend>.npz with the outputs
in inference mode, and for the single layers in training mode too.  `save(DIR)` first writes
the weights: Keras' own initialisers, then every batch norm randomised with bounded gain (gamma
in [0.5, 1], beta and moving mean ~ N(0, 0.1), moving variance in [1, 2]), as the deeplab2
oracle does: every weight matters (no block starts as the identity) and the network stays well
conditioned, so the comparison measures the backends, not an exploding activation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from runtime import backend

backend.choose()  # KERAS_BACKEND: this file runs in one process per backend

import keras  # noqa: E402

from models.backbones import BackboneSpec  # noqa: E402
from models.classifier import ClassifierSpec  # noqa: E402
from models.layers import AxialAttention, LocalSelfAttention2D  # noqa: E402
from models.panoptic_deeplab import PanopticDeepLabSpec  # noqa: E402

TINY = dict(width_multiplier=0.125, num_heads=2, stage_blocks=(1, 1, 1, 1))


def _layer_model(layer, shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, layer(inputs))


def models() -> dict:
    """name -> (build function, input shape without batch)."""
    seg = dict(stem="three_conv", output_stride=16)
    return {
        "axial_layer_global": (lambda: _layer_model(AxialAttention("width", 8, 16, num_heads=2), (5, 7, 12)),
                               (5, 7, 12)),
        "axial_layer_span3_stride2": (lambda: _layer_model(
            AxialAttention("height", 8, 16, num_heads=2, span=3, strides=2), (7, 6, 12)), (7, 6, 12)),
        "local_attention_ps": (lambda: _layer_model(
            LocalSelfAttention2D(8, 8, num_heads=2, window=3, key_position=True, value_position=True,
                                 use_batch_norm=True), (6, 5, 8)), (6, 5, 8)),
        "local_attention_sasa_stride2": (lambda: _layer_model(
            LocalSelfAttention2D(8, 8, num_heads=2, window=3, strides=2), (6, 6, 8)), (6, 6, 8)),
        # 64 px: the last stage keeps 2 x 2 positions, so training-mode BN has more than one
        # value per channel and image to normalise.
        "resnet_classifier": (lambda: ClassifierSpec(BackboneSpec("resnet", **TINY), 5).build((64, 64)), (64, 64, 3)),
        "attention_classifier": (lambda: ClassifierSpec(BackboneSpec("attention", **TINY), 5).build((64, 64)),
                                 (64, 64, 3)),
        "axial_classifier": (lambda: ClassifierSpec(BackboneSpec("axial", **TINY), 5).build((64, 64)), (64, 64, 3)),
        "full_axial_classifier": (lambda: ClassifierSpec(BackboneSpec("axial", stem="axial", span=3, **TINY), 5)
                                  .build((64, 64)), (64, 64, 3)),
        "axial_deeplab": (lambda: PanopticDeepLabSpec(BackboneSpec("axial", span=5, **TINY, **seg), 4)
                          .build((33, 33)), (33, 33, 3)),
        "axial_deeplab_axial_decoder": (lambda: PanopticDeepLabSpec(
            BackboneSpec("axial", span=5, **TINY, **seg), 4, decoder="axial").build((33, 33)), (33, 33, 3)),
        "resnet_deeplab_aspp": (lambda: PanopticDeepLabSpec(BackboneSpec("resnet", **TINY, **seg), 4, aspp=True)
                                .build((33, 33)), (33, 33, 3)),
    }


# The single-layer models, run in training mode too.  Whole networks are run in inference mode
# only: their training-mode outputs are ill-conditioned in float32 (tests/test_backends.py).
LAYERS = ("axial_layer_global", "axial_layer_span3_stride2", "local_attention_ps", "local_attention_sasa_stride2")
BN_DRAWS = {"gamma": lambda rng, shape: rng.uniform(0.5, 1.0, shape),
            "beta": lambda rng, shape: rng.normal(0, 0.1, shape),
            "moving_mean": lambda rng, shape: rng.normal(0, 0.1, shape),
            "moving_variance": lambda rng, shape: rng.uniform(1.0, 2.0, shape)}


def save(directory: Path) -> None:
    """Weights for every model (see the module docstring), and one input batch per model."""
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    inputs = {}
    for name, (build, shape) in models().items():
        model = build()
        for variable in model.weights:
            kind = variable.path.rsplit("/", 1)[-1]
            if kind in BN_DRAWS:
                variable.assign(BN_DRAWS[kind](rng, variable.shape).astype(variable.dtype))
        model.save_weights(directory / f"{name}.weights.h5")
        inputs[name] = rng.uniform(-1, 1, (2, *shape)).astype("float32")
    np.savez(directory / "inputs.npz", **inputs)


def _forward(model, training: bool):
    """The model's forward pass.  Under JAX it is compiled whole: JAX's eager mode compiles
    every op on its own, minutes for these models where one jit takes seconds.  TensorFlow's
    eager mode runs ready kernels and is the faster of its two here."""
    if keras.backend.backend() != "jax":
        return lambda x: model(x, training=training)
    import jax

    variables = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    return jax.jit(lambda x: model.stateless_call(*variables, x, training=training)[0])


def outputs(directory: Path) -> dict:
    """{name/mode/output: array} of every model on its input, with the saved weights."""
    inputs = np.load(directory / "inputs.npz")
    out = {}
    for name, (build, _) in models().items():
        model = build()
        model.load_weights(directory / f"{name}.weights.h5")
        for training in (False, True) if name in LAYERS else (False,):
            result = _forward(model, training)(inputs[name])
            for key, value in (result.items() if isinstance(result, dict) else [("output", result)]):
                out[f"{name}/{'training' if training else 'inference'}/{key}"] = keras.ops.convert_to_numpy(value)
    return out


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    np.savez(folder / f"{keras.backend.backend()}.npz", **outputs(folder))
