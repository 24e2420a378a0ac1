"""deeplab2's models and checkpoints: pinned parameter counts, the layout against deeplab2's own
fixture, the converter (every endpoint at output strides 16 and 32, loading under JAX, bad input)
and the model zoo evaluation end to end on the tiny Cityscapes fixture."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from models import checkpoints, presets
from models.deeplab2 import AlignCornersResize
from tests import deeplab2_layout as layout
from tests.test_data_readers import write_fixture

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "deeplab2"
TINY_CKPT = FIXTURE / "axial_resnet_tiny" / "ckpt-1"
# The fixture's model: get_model('axial_resnet_s', width_multiplier=0.25, stem_width_multiplier=0.25,
# num_blocks=[1, 1, 1, 1]) (tests/fixtures/deeplab2/README.md).
TINY = {"width_multiplier": 0.25, "stem_width_multiplier": 0.25, "num_blocks": (1, 1, 1, 1)}
TINY_FLAGS = ["--preset", "deeplab2-axial-resnet-s", "--width", "0.25", "--stem-width", "0.25", "--blocks", "1,1,1,1"]

# deeplab2's model/encoder/axial_resnet_instances_test.py: trainable weights at 224 x 224,
# no classifier (BN scale and offset included, inside the attention layers too).
PINNED = {
    "deeplab2-resnet50": 23_508_032,
    "deeplab2-resnet50-beta": 23_631_808,
    "deeplab2-max-deeplab-s-backbone": 41_343_424,
    "deeplab2-max-deeplab-l-backbone": 175_115_392,
    "deeplab2-axial-resnet-s": 11_466_912,
    "deeplab2-axial-resnet-l": 43_714_048,
    "deeplab2-axial-deeplab-s": 11_565_856,
    "deeplab2-axial-deeplab-l": 43_841_920,
    "deeplab2-swidernet-1-1-1": 109_014_080,
    "deeplab2-swidernet-1-1-3": 333_245_504,
    "deeplab2-swidernet-1-1-4.5": 487_453_760,
    "deeplab2-axial-swidernet-1-1-1": 136_399_392,
    "deeplab2-axial-swidernet-1-1-3": 393_935_520,
    "deeplab2-axial-swidernet-1-1-4.5": 570_346_912,
}
DEEPLAB2 = sorted(name for name, p in presets.PRESETS.items() if p.origin == "deeplab2")


def symbolic(preset, input_size=None):
    """The model's variables without values: weights are never initialised (cheap at 570 M)."""
    keras.backend.clear_session()
    with keras.StatelessScope(initialize_variables=False):
        return preset.build(input_size)


@pytest.mark.parametrize("name", DEEPLAB2)
def test_preset_matches_deeplab2_layout_and_pinned_count(name):
    preset = presets.get(name)
    assert preset.source.startswith("deeplab2 ") and not preset.cites and preset.origin == "deeplab2"
    model = symbolic(preset, (224, 224) if name in PINNED else None)
    if name in PINNED:
        assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == PINNED[name]
    # Every variable deeplab2 saves for this model has exactly one place of the same shape here,
    # and every Keras variable gets one (shapes only; nothing is read).
    shapes = {key + layout.VALUE: shape for key, shape in layout.variables_of(preset.model).items()}
    plan, conversion = checkpoints.match_variables(shapes, model, preset)
    assert len(plan) == len(model.weights)
    if name == "deeplab2-max-deeplab-l-backbone-cityscapes":
        # The stacked decoder is in the checkpoint, but the decoders read res5 before it.
        assert conversion.skipped_unused and all(n.startswith("encoder/_decoder_stage")
                                                 for n in conversion.skipped_unused)
    else:
        assert not conversion.skipped_unused
    keras.backend.clear_session()


def test_zoo_presets_are_the_rows_of_the_zoo_table():
    reported = pd.read_csv(ROOT / "reported" / "model_zoo.csv", dtype=str)
    zoo = {p.zoo_row: p for p in presets.PRESETS.values() if p.zoo_row}
    assert set(zoo) == set(reported["row"])
    for preset in zoo.values():
        assert preset.input_size == (1025, 2049) and preset.model.num_classes == 19
        assert preset.model.encoder.output_stride == 16
    assert not set(presets.paper_presets()) & set(DEEPLAB2)


def test_layout_generator_equals_deeplab2s_own_variable_list():
    """tests/deeplab2_layout.py against the variables deeplab2 wrote for the fixture."""
    written = {}
    for line in (FIXTURE / "axial_resnet_tiny" / "variables.txt").read_text().splitlines():
        key, shape = line.split("\t")
        if key.startswith("encoder/"):
            written[key[: -len(layout.VALUE)]] = tuple(json.loads(shape))
    tiny = presets.get("deeplab2-axial-resnet-s").variant(**TINY)
    assert layout.variables_of(tiny.model) == written


def _fixture_outputs(output_stride):
    with np.load(FIXTURE / "axial_resnet_tiny" / f"outputs_os{output_stride}.npz") as archive:
        return {k: archive[k] for k in archive.files}


def test_fixture_checkpoint_reproduces_every_deeplab2_endpoint_at_both_output_strides(tmp_path, capsys):
    x = np.load(FIXTURE / "input.npy")
    for output_stride in (32, 16):
        preset = presets.get("deeplab2-axial-resnet-s").variant(**TINY, output_stride=output_stride)
        conversion = checkpoints.load_deeplab2(TINY_CKPT, preset, x.shape[1:3])
        expected = _fixture_outputs(output_stride)
        assert {f"{k}{i}" for k in ("stage", "res") for i in range(1, 6)} <= set(expected)
        diffs = checkpoints.compare_outputs(conversion.model, x, expected)
        assert set(diffs) == set(expected)
        assert max(diffs.values()) < 1e-5, diffs
        keras.backend.clear_session()
    # The command line: converts, checks every endpoint, writes the weights and their record.
    out = tmp_path / "tiny.weights.h5"
    rc = checkpoints.main(["deeplab2", str(TINY_CKPT.parent), *TINY_FLAGS, "--output-stride", "16",
                           "--output", str(out), "--check-input", str(FIXTURE / "input.npy"),
                           "--check-outputs", str(FIXTURE / "axial_resnet_tiny" / "outputs_os16.npz")])
    printed = capsys.readouterr().out
    assert rc == 0 and "check passed" in printed and "res5" in printed
    record = json.loads((tmp_path / "tiny.json").read_text())
    assert record["preset"] == "deeplab2-axial-resnet-s" and record["overrides"]["num_blocks"] == [1, 1, 1, 1]
    assert max(record["check"]["max_abs_difference"].values()) < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.weights.h5"]


JAX_LOAD = """
import sys
import numpy as np
import keras
from models import presets
assert keras.backend.backend() == "jax"
preset = presets.get("deeplab2-axial-resnet-s").variant(width_multiplier=0.25, stem_width_multiplier=0.25,
                                                        num_blocks=(1, 1, 1, 1), output_stride=16)
x = np.load(sys.argv[2])
# Built without drawing random initial values (slow under JAX): load_weights sets every variable,
# and one it missed would fail the prediction as uninitialised.
with keras.StatelessScope(initialize_variables=False):
    model = preset.build(x.shape[1:3])
model.load_weights(sys.argv[1])
outputs = model.predict(x, verbose=0)  # one compiled function, not op-by-op dispatch
np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in outputs.items()})
"""


def test_converted_weights_load_under_jax_and_give_the_same_outputs(tmp_path):
    x = np.load(FIXTURE / "input.npy")
    preset = presets.get("deeplab2-axial-resnet-s").variant(**TINY, output_stride=16)
    weights = tmp_path / "tiny.weights.h5"
    assert checkpoints.main(["deeplab2", str(TINY_CKPT), *TINY_FLAGS, "--output-stride", "16",
                             "--output", str(weights)]) == 0
    tf_model = preset.build(x.shape[1:3])
    tf_model.load_weights(str(weights))  # the TensorFlow side loads them too
    tf_outputs = {k: np.asarray(v) for k, v in tf_model(x, training=False).items()}
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", JAX_LOAD, str(weights), str(FIXTURE / "input.npy"),
                    str(tmp_path / "jax.npz")], cwd=ROOT, env=env, check=True, capture_output=True)
    reference = _fixture_outputs(16)
    with np.load(tmp_path / "jax.npz") as jax_outputs:
        assert set(jax_outputs.files) == set(tf_outputs) == set(reference)
        for key, value in tf_outputs.items():
            scale = np.abs(value).max()
            np.testing.assert_allclose(jax_outputs[key], value, rtol=1e-5, atol=1e-5 * scale, err_msg=key)
            assert np.abs(jax_outputs[key] - reference[key]).max() < 1e-5, key


def _truncated_copy(tmp_path):
    copy = tmp_path / "truncated"
    shutil.copytree(TINY_CKPT.parent, copy)
    data = copy / "ckpt-1.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    return copy / "ckpt-1"


def _edited_copy(tmp_path, add=None, drop=None):
    """The fixture's variables rewritten with one added or one left out."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(TINY_CKPT))
    values = {k[: -len(layout.VALUE)]: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
              if k.startswith("encoder/")}
    if add:
        values[add] = np.zeros((1, 1, 3, 3), np.float32)
    if drop:
        del values[drop]
    return layout.write_checkpoint(tmp_path / "edited" / "ckpt-1", values)


BAD_INPUT = {
    "missing checkpoint": (lambda tmp: tmp / "nowhere" / "ckpt-1", TINY_FLAGS, "checkpoint not found"),
    "another model": (lambda tmp: TINY_CKPT, [*TINY_FLAGS[:3], "0.5", *TINY_FLAGS[4:]], "shape mismatch"),
    "panoptic preset, encoder checkpoint": (
        lambda tmp: TINY_CKPT, [*TINY_FLAGS[2:], "--preset", "deeplab2-max-deeplab-s-backbone-cityscapes"],
        "unused checkpoint variable encoder/_stage2/_block1/_attention"),
    "truncated file": (_truncated_copy, TINY_FLAGS, "corrupt or truncated"),
    "unused variable": (lambda tmp: _edited_copy(tmp, add="encoder/_stage6/_block1/_conv1_bn_act/_conv/kernel"),
                        TINY_FLAGS, "unused checkpoint variable encoder/_stage6"),
    "missing variable": (lambda tmp: _edited_copy(tmp, drop="encoder/_stage3/_block1/_attention/_width_axis/"
                                                             "_value_rpe/embeddings"),
                         TINY_FLAGS, "missing: the checkpoint has no variable for deeplab2-axial-resnet-s's "
                                     "stage3_block1_attention_width_axis/value_position_table/embeddings"),
    "unknown preset": (lambda tmp: TINY_CKPT, ["--preset", "deeplab2-axial-resnet-xxl"], "unknown preset"),
    "paper preset": (lambda tmp: TINY_CKPT, ["--preset", "axial-deeplab-s-cityscapes"], "not a deeplab2-layout"),
    "bad blocks": (lambda tmp: TINY_CKPT, [*TINY_FLAGS[:-1], "1,1,1"], "--blocks takes four"),
    "missing check input": (lambda tmp: TINY_CKPT, [*TINY_FLAGS, "--check-input", "/nowhere/x.npy",
                                                    "--check-outputs", str(FIXTURE / "input.npy")],
                            "check input not found: /nowhere/x.npy"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    make_checkpoint, flags, message = BAD_INPUT[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc = checkpoints.main(["deeplab2", str(make_checkpoint(tmp_path)), *flags,
                           "--output", str(out_dir / "model.weights.h5")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not list(out_dir.iterdir())


def test_failed_check_exits_1_and_writes_nothing(tmp_path, capsys):
    rc = checkpoints.main(["deeplab2", str(TINY_CKPT), *TINY_FLAGS, "--output-stride", "16",
                           "--output", str(tmp_path / "model.weights.h5"), "--tolerance", "1e-12",
                           "--check-input", str(FIXTURE / "input.npy"),
                           "--check-outputs", str(FIXTURE / "axial_resnet_tiny" / "outputs_os16.npz")])
    assert rc == 1 and "check failed" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


def test_training_state_is_not_model_state():
    assert checkpoints.is_training_state("encoder/_stem/_conv/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/"
                                         "VARIABLE_VALUE")
    assert checkpoints.is_training_state("optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE")
    assert checkpoints.is_training_state("global_step/.ATTRIBUTES/VARIABLE_VALUE")
    assert not checkpoints.is_training_state("encoder/_stem/_conv/kernel/.ATTRIBUTES/VARIABLE_VALUE")


def test_align_corners_resize_equals_tensorflows():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(2, 5, 9, 3)).astype(np.float32)
    for size in ((9, 17), (17, 33), (4, 7), (5, 9)):
        ours = np.asarray(AlignCornersResize(*size)(x))
        theirs = tf.compat.v1.image.resize_bilinear(x, size, align_corners=True).numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_model_zoo_end_to_end_on_the_cityscapes_fixture(tmp_path, monkeypatch, capsys):
    """A tiny model in the zoo's Panoptic-DeepLab layout, saved under deeplab2's checkpoint keys,
    converted by the command line and evaluated by the model zoo command on the tiny Cityscapes
    fixture.  Its heads are set so that the prediction is known: road (the fixture's stuff class)
    everywhere, no instance center; so PQ and mIoU follow from the fixture's masks."""
    from reproductions import model_zoo

    write_fixture(tmp_path / "data" / "cityscapes", "cityscapes", "val")
    name = "deeplab2-max-deeplab-s-backbone-cityscapes"
    tiny = {**TINY, "num_classes": 2}
    values = layout.random_values(layout.variables_of(presets.get(name).variant(**tiny).model))
    values["semantic_last_layer/kernel"][:] = 0
    values["semantic_last_layer/bias"][:] = [0.0, 10.0]          # classes: person (id 1), road (id 7)
    values["instance_center_head_last_layer/kernel"][:] = 0
    values["instance_center_head_last_layer/bias"][:] = -1.0     # below the 0.1 center threshold
    prefix = layout.write_checkpoint(tmp_path / "ckpt" / "ckpt-1", values)
    weights = tmp_path / "tiny.weights.h5"
    assert checkpoints.main(["deeplab2", prefix, "--preset", name, "--width", "0.25", "--stem-width", "0.25",
                             "--blocks", "1,1,1,1", "--num-classes", "2", "--output", str(weights)]) == 0
    # The fixture's 12 x 16 images are far below 2048 pixels: keep its road as stuff.
    monkeypatch.setitem(model_zoo.POSTPROCESS, "stuff_area", 1)
    tables = tmp_path / "tables"
    assert model_zoo.main(["--weights", str(weights), "--data-dir", str(tmp_path / "data"),
                           "--input-size", "33", "33", "--output-dir", str(tables)]) == 0
    df = pd.read_csv(tables / "model_zoo.full.csv", dtype=str, keep_default_na=False)
    measured = df[df["row"] == "max-deeplab-s-backbone"].set_index("metric")
    # Fixture (tests/test_data_readers.py): 12 x 16 pixels, a void top row (16), two persons
    # (16 + 20), a person crowd (12), road elsewhere (128).  Predicted road covers everything:
    # its IoU is 128 / (192 - 16 void) for PQ (void pixels leave the union) and mIoU alike;
    # both persons are missed.  PQ = mIoU = (128 / 176 + 0) / 2.
    expected = 100 * (128 / 176) / 2
    assert float(measured.at["PQ", "measured"]) == pytest.approx(expected, abs=1e-3)
    assert float(measured.at["mIoU", "measured"]) == pytest.approx(expected, abs=1e-3)
    assert (measured["status"] == "off").all() and "not the released model" in measured.at["PQ", "note"]
    others = df[df["row"] != "max-deeplab-s-backbone"]
    assert len(others) == 8 and (others["status"] == "not_measured").all()
    assert (tables / "model_zoo.full.md").exists()
    # Bad input: one line, exit 2.
    capsys.readouterr()
    assert model_zoo.main(["--weights", str(tmp_path / "none.weights.h5"), "--data-dir", str(tmp_path)]) == 2
    assert model_zoo.main(["--weights", str(weights), "--data-dir", str(tmp_path / "nowhere")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "weights not found" in errors[0] and "not found" in errors[1]


# --- the first author's PyTorch Axial-ResNets (csrhddlam/axial-deeplab) --------------------------

TORCH_FIXTURE = Path(__file__).parent / "fixtures" / "axial-deeplab-pytorch"
# AxialAttentionNet(AxialBlock, [1, 1, 1, 1], s=0.25, num_classes=10) (the fixture's README).
TORCH_FLAGS = ["--preset", "pytorch-axial50s", "--width", "0.25", "--blocks", "1,1,1,1", "--num-classes", "10"]


def test_pytorch_state_dict_reproduces_logits_and_every_stage_without_torch(tmp_path, capsys):
    out = tmp_path / "tiny.weights.h5"
    rc = checkpoints.main(["axial-deeplab-pytorch", str(TORCH_FIXTURE / "state_dict.npz"), *TORCH_FLAGS,
                           "--output", str(out), "--check-input", str(TORCH_FIXTURE / "input_nhwc.npy"),
                           "--check-outputs", str(TORCH_FIXTURE / "outputs.npz"), "--tolerance", "1e-5"])
    assert rc == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "tiny.json").read_text())
    assert set(record["check"]["max_abs_difference"]) == {"logits", "layer1", "layer2", "layer3", "layer4"}
    assert max(record["check"]["max_abs_difference"].values()) < 1e-5
    # The written weights load into the preset's variant and give the same logits.
    model = presets.get("pytorch-axial50s").variant(width_multiplier=0.25, num_blocks=(1, 1, 1, 1),
                                                    num_classes=10).build()
    model.load_weights(str(out))
    with np.load(TORCH_FIXTURE / "outputs.npz") as expected:
        logits = np.asarray(model(np.load(TORCH_FIXTURE / "input_nhwc.npy"), training=False))
        assert np.abs(logits - expected["logits"]).max() < 1e-5


def test_pytorch_bad_input_is_one_line_exit_2(tmp_path, capsys):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((TORCH_FIXTURE / "state_dict.npz").read_bytes()[:100_000])
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"not a pickle")
    cases = [
        (TORCH_FIXTURE / "nowhere.npz", TORCH_FLAGS, "checkpoint not found"),
        (truncated, TORCH_FLAGS, "corrupt or truncated"),
        (TORCH_FIXTURE / "state_dict.npz", [*TORCH_FLAGS[:3], "0.5", *TORCH_FLAGS[4:]], "shape mismatch"),
        (TORCH_FIXTURE / "state_dict.npz", ["--preset", "deeplab2-axial-resnet-s"], "not a axial-deeplab-pytorch"),
        # Without torch: a message naming it; with torch: the file is not a checkpoint.
        (pth, TORCH_FLAGS, "needs PyTorch" if importlib.util.find_spec("torch") is None else "cannot read"),
    ]
    for path, flags, message in cases:
        rc = checkpoints.main(["axial-deeplab-pytorch", str(path), *flags,
                               "--output", str(tmp_path / "out.weights.h5")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and message in err, (path, err)
    assert not (tmp_path / "out.weights.h5").exists()
