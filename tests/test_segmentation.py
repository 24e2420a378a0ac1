"""Panoptic-DeepLab meta-architecture: forward shapes, span and multi-scale counting."""

import dataclasses

import keras
import numpy as np
import pytest

from models import counting, presets
from models.backbones import BackboneSpec
from models.panoptic_deeplab import PanopticDeepLabSpec
from reproductions import runner

TINY_AXIAL = BackboneSpec("axial", width_multiplier=0.125, stem="three_conv", span=65, output_stride=16)


@pytest.mark.jax
@pytest.mark.parametrize("backbone,decoder,aspp", [
    (TINY_AXIAL, "dual", False),
    (TINY_AXIAL, "axial", False),
    (dataclasses.replace(TINY_AXIAL, output_stride=32), "dual", False),
    (dataclasses.replace(TINY_AXIAL, output_stride=32), "axial", False),
    (BackboneSpec("resnet", width_multiplier=0.25, stem="three_conv", output_stride=16), "dual", True),
])
def test_tiny_panoptic_deeplab_forward_gives_three_heads_at_os4(backbone, decoder, aspp):
    model = PanopticDeepLabSpec(backbone, num_classes=5, aspp=aspp, decoder=decoder).build((65, 65))
    image = np.random.default_rng(0).normal(size=(2, 65, 65, 3)).astype("float32")
    out = model(image, training=False)
    assert tuple(out["semantic"].shape) == (2, 17, 17, 5)
    assert tuple(out["center"].shape) == (2, 17, 17, 1)
    assert tuple(out["offset"].shape) == (2, 17, 17, 2)
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in out.values())


def test_output_stride_16_keeps_the_last_stage_at_os16():
    with keras.StatelessScope():
        model = PanopticDeepLabSpec(TINY_AXIAL, 5).build((129, 129))
    assert model.get_layer("stage4_block3_out").output.shape[1:3] == (9, 9)
    assert model.get_layer("stage3_block6_out").output.shape[1:3] == (9, 9)


def test_xception71_endpoints():
    spec = BackboneSpec("xception", depth=71, output_stride=16)
    with keras.StatelessScope():
        model = PanopticDeepLabSpec(spec, 19, aspp=True).build((129, 129))
    assert model.get_layer("semantic_decoder_os8_project").input.shape[1:] == (17, 17, 728)
    assert model.get_layer("semantic_decoder_os4_project").input.shape[1:] == (33, 33, 256)
    assert model.get_layer("semantic_aspp_conv1x1").input.shape[1:] == (9, 9, 2048)


def test_spans_change_madds_not_params():
    counts = {span: runner.measure_counts(f"axial-deeplab-l-span{span}-cityscapes")
              for span in (5, 9, 17, 33)}
    counts[65] = runner.measure_counts("axial-deeplab-l-cityscapes")
    assert len({c["params"] for c in counts.values()}) == 1
    madds = [counts[s]["madds"] for s in (5, 9, 17, 33, 65)]
    assert madds == sorted(madds) and len(set(madds)) == 5
    # Only the attention products depend on the span.
    conv = {counts[s]["madds_by_op"]["conv"] for s in counts}
    assert len(conv) == 1


def test_multi_scale_counts_every_pass():
    ms = presets.get("axial-deeplab-l-coco-ms")
    runs = ms.inference_runs()
    assert runs == [(s, s) for s in (513, 769, 1025, 1281, 1537) for _ in range(2)]
    single = dataclasses.replace(ms, inference_scales=(1.0,), flip=False)
    # Per-pass counts through the runner's cache; the preset's own count below is independent.
    total = sum(runner.count_at(single.model, size).madds for size in set(runs)) * 2
    counted = counting.count_preset(ms)
    assert counted.madds == total
    assert counted.params == counting.count_preset(single).params


def test_decoder_choice_is_validated():
    with pytest.raises(ValueError, match="unknown decoder"):
        PanopticDeepLabSpec(TINY_AXIAL, 5, decoder="fpn")
    with pytest.raises(ValueError, match="Axial-Decoder"):
        PanopticDeepLabSpec(BackboneSpec("resnet", stem="three_conv"), 5, decoder="axial")
