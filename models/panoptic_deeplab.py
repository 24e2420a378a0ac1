"""Panoptic-DeepLab [18] with any backbone: Axial-DeepLab and its baselines (paper Sec. 3.2).

Axial-DeepLab = Axial-ResNet at output stride 16 (or 32), no ASPP, Panoptic-DeepLab's
dual convolutional decoders and heads, or a single Axial-Decoder (Tab. 8).  The
baselines (Tab. 2, 4, 6, 7, 8) swap the backbone and optionally add ASPP.

Outputs at output stride 4: semantic logits (classes), center heatmap (1), offsets (2).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from models import decoders
from models.backbones import BackboneSpec, build_backbone

DECODERS = ("dual", "axial")


@dataclass(frozen=True)
class PanopticDeepLabSpec:
    backbone: BackboneSpec
    num_classes: int
    aspp: bool = False
    decoder: str = "dual"

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; expected one of {DECODERS}")
        if self.decoder == "axial" and (self.aspp or self.backbone.family != "axial"):
            raise ValueError("the Axial-Decoder is defined for Axial-ResNet backbones without ASPP")

    def build(self, input_size: tuple[int, int], name: str = "panoptic_deeplab") -> keras.Model:
        inputs = keras.Input(shape=(*input_size, 3), name="image")
        endpoints = build_backbone(inputs, self.backbone)
        features = endpoints["stage4"]
        os_ = self.backbone.output_stride
        if self.decoder == "axial":
            shared = decoders.axial_decoder(features, endpoints, os_, self.backbone.span,
                                            self.backbone.width_multiplier)
            semantic_features = instance_features = shared
        else:
            semantic_in = decoders.aspp(features, os_, name="semantic_aspp") if self.aspp else features
            instance_in = decoders.aspp(features, os_, name="instance_aspp") if self.aspp else features
            semantic_features = decoders.convolutional_decoder(
                semantic_in, endpoints, os_, name="semantic_decoder", **decoders.SEMANTIC_DECODER)
            instance_features = decoders.convolutional_decoder(
                instance_in, endpoints, os_, name="instance_decoder", **decoders.INSTANCE_DECODER)
        outputs = {
            "semantic": decoders.prediction_head(semantic_features, 256, self.num_classes, "semantic_head"),
            "center": decoders.prediction_head(instance_features, 32, 1, "center_head"),
            "offset": decoders.prediction_head(instance_features, 32, 2, "offset_head"),
        }
        return keras.Model(inputs, outputs, name=name)
