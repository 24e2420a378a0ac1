"""ImageNet classifier: backbone, global average pooling, 1000-way FC (paper Sec. 4.1)."""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from models.backbones import BackboneSpec, build_backbone

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ClassifierSpec:
    backbone: BackboneSpec
    num_classes: int = IMAGENET_CLASSES

    def build(self, input_size: tuple[int, int] = (224, 224), name: str = "classifier") -> keras.Model:
        inputs = keras.Input(shape=(*input_size, 3), name="image")
        features = build_backbone(inputs, self.backbone)["stage4"]
        x = layers.GlobalAveragePooling2D(name="head_pool")(features)
        logits = layers.Dense(self.num_classes, name="head_fc")(x)
        return keras.Model(inputs, logits, name=name)
