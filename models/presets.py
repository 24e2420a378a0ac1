"""One registry of named models, each citing the paper row it reproduces.

A preset is data: a backbone spec, the task head, the input size the paper
counts it at, and the (table, row) cells it stands for.  Row ids are those of
reported/table<N>.csv.  Build one with `build(name)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from models.backbones import BackboneSpec
from models.classifier import build_classifier


@dataclass(frozen=True)
class Preset:
    name: str
    backbone: BackboneSpec
    summary: str
    cites: tuple[tuple[int, str], ...]
    task: str = "imagenet"
    input_size: tuple[int, int] = (224, 224)

    def build(self, input_size: tuple[int, int] | None = None) -> keras.Model:
        size = input_size or self.input_size
        if self.task == "imagenet":
            return build_classifier(self.backbone, size, name=self.name.replace(".", "_"))
        raise ValueError(f"preset {self.name!r}: unknown task {self.task!r}")


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    if preset.name in PRESETS:
        raise ValueError(f"duplicate preset name {preset.name!r}")
    PRESETS[preset.name] = preset
    return preset


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise KeyError(f"unknown preset {name!r}; known presets: {known}") from None


def build(name: str, input_size: tuple[int, int] | None = None) -> keras.Model:
    return get(name).build(input_size)


def _width_tag(multiplier: float) -> str:
    return f"w{multiplier:g}"


# --- Tab. 1 and Tab. 9: ImageNet ---------------------------------------------------------

register(Preset(
    name="resnet50",
    backbone=BackboneSpec("resnet"),
    summary="ResNet-50 [30] (stride on the 3x3 convolution, as in [63]'s baseline).",
    cites=((1, "resnet50"),),
))

register(Preset(
    name="sasa-attention-resnet50",
    backbone=BackboneSpec("attention", position_sensitive=False, attention_batch_norm=False),
    summary="Conv-Stem + Attention [63]: every 3x3 conv of ResNet-50 replaced by 7x7 local "
            "self-attention with a query position term, no BN in the attention (Eq. 2).",
    cites=((1, "conv-stem-attention-sasa"),),
))

register(Preset(
    name="attention-resnet50-bn",
    backbone=BackboneSpec("attention", position_sensitive=False, attention_batch_norm=True),
    summary="Conv-Stem + Attention with BN in the attention layers (Tab. 1, BN column).",
    cites=((1, "conv-stem-attention-bn"),),
))

_PS_ROWS = {0.5: "ps-attention-w050", 0.75: "ps-attention-w075", 1.0: "ps-attention-w100",
            1.25: "ps-attention-w125", 1.5: "ps-attention-w150"}
for _w, _row in _PS_ROWS.items():
    register(Preset(
        name=f"ps-attention-resnet50-{_width_tag(_w)}",
        backbone=BackboneSpec("attention", width_multiplier=_w, position_sensitive=True,
                              attention_batch_norm=True),
        summary=f"Conv-Stem + PS-Attention, width x{_w:g}: 7x7 local position-sensitive "
                "self-attention (Eq. 3) with BN.",
        cites=((9, _row),) + (((1, "conv-stem-ps-attention"),) if _w == 1.0 else ()),
    ))

_AXIAL_ROWS = {0.375: "axial-conv-stem-w0375", 0.5: "axial-conv-stem-w050",
               0.75: "axial-conv-stem-w075", 1.0: "axial-conv-stem-w100"}
for _w, _row in _AXIAL_ROWS.items():
    register(Preset(
        name=f"axial-resnet-conv-stem-{_width_tag(_w)}",
        backbone=BackboneSpec("axial", width_multiplier=_w, span=None),
        summary=f"Conv-Stem + Axial-Attention, width x{_w:g} (S = 0.5, M = 0.75, L = 1.0): "
                "global span, position-sensitive, BN.",
        cites=((9, _row),) + (((1, "conv-stem-axial-attention"),) if _w == 0.5 else ()),
    ))

_FULL_ROWS = {0.5: "full-axial-w050", 0.75: "full-axial-w075", 1.0: "full-axial-w100"}
for _w, _row in _FULL_ROWS.items():
    register(Preset(
        name=f"full-axial-resnet-{_width_tag(_w)}",
        backbone=BackboneSpec("axial", width_multiplier=_w, span=15, stem="axial"),
        summary=f"Full (stand-alone) Axial-ResNet, width x{_w:g}: three axial stem blocks, "
                "span m = 15 in every block.",
        cites=((9, _row),) + (((1, "full-axial-attention"),) if _w == 0.5 else ()),
    ))
