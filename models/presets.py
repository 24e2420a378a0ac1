"""One registry of named models, each citing the paper row it reproduces.

A preset is data: a backbone spec, the task head, the input size the paper
counts it at, and the (table, row) cells it stands for.  Row ids are those of
reported/table<N>.csv.  Build one with `build(name)`.

Presets named `deeplab2-...` (origin "deeplab2", at the end of this file) are not paper
rows: they are the models of deeplab2, the authors' TF2 library, in its own layout
(models/deeplab2.py), so its released checkpoints load (models/checkpoints.py).  Each cites
its deeplab2 source instead of a paper row; the Cityscapes ones also name their row of the
model zoo table (reported/model_zoo.csv).  `paper_presets()` lists the paper's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras

from models import axial_pytorch, deeplab2
from models.backbones import BackboneSpec
from models.classifier import ClassifierSpec
from models.deeplab2 import Deeplab2EncoderSpec, Deeplab2PanopticSpec
from models.panoptic_deeplab import PanopticDeepLabSpec

ORIGINS = ("paper", "deeplab2", "pytorch", "imagenet-init")


@dataclass(frozen=True)
class Preset:
    """A named model at the input size the paper counts it at.

    `inference_scales` and `flip` are the multi-scale inference of the paper's
    MS rows: the model runs once per scale (input side (n - 1) * s + 1, the
    DeepLab convention) and once more flipped; counts add over those runs.
    """

    name: str
    model: (ClassifierSpec | PanopticDeepLabSpec | Deeplab2EncoderSpec | Deeplab2PanopticSpec
            | axial_pytorch.PyTorchAxialResNetSpec)
    summary: str
    cites: tuple[tuple[int, str], ...]
    input_size: tuple[int, int] = (224, 224)
    inference_scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    # "paper": a model of the paper's tables (cites its rows); "deeplab2": deeplab2's layout,
    # citing `source` (a deeplab2 file and class or config) and maybe a model zoo row;
    # "pytorch": the first author's PyTorch re-implementation (csrhddlam/axial-deeplab);
    # "imagenet-init": the ImageNet classifier of a paper model's backbone, which initialises it
    # (Sec. 4), citing that model in `source`.
    origin: str = "paper"
    source: str = ""
    zoo_row: str = ""

    def __post_init__(self):
        if self.origin not in ORIGINS:
            raise ValueError(f"unknown preset origin {self.origin!r}; expected one of {ORIGINS}")
        if self.origin != "paper" and not self.source:
            raise ValueError(f"{self.name}: a preset that is not a paper row must cite its source")

    @property
    def backbone(self) -> BackboneSpec:
        return self.model.backbone

    def build(self, input_size: tuple[int, int] | None = None) -> keras.Model:
        return self.model.build(input_size or self.input_size, name=self.name.replace(".", "_"))

    def variant(self, **overrides) -> "Preset":
        """The same preset with its source's constructor overrides: deeplab2's get_model
        arguments (width_multiplier, stem_width_multiplier, num_blocks, output_stride;
        num_classes for panoptic models), or AxialAttentionNet's (width_multiplier = s,
        num_blocks, num_classes); e.g. the tiny models of the checkpoint fixtures.  Without
        overrides, itself."""
        if not overrides:
            return self
        if self.origin == "paper":
            raise ValueError(f"{self.name}: paper presets take no overrides")
        return dataclasses.replace(self, model=self.model.with_overrides(**overrides))

    def inference_runs(self) -> list[tuple[int, int]]:
        """Input sizes of every forward pass of one inference (one entry per pass)."""
        sizes = [tuple(int((n - 1) * s + 1) for n in self.input_size) for s in self.inference_scales]
        return [size for size in sizes for _ in range(2 if self.flip else 1)]


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


def paper_presets() -> list[str]:
    """Names of the presets that stand for paper rows (the ones the tables count)."""
    return sorted(name for name, preset in PRESETS.items() if preset.origin == "paper")


def _width_tag(multiplier: float) -> str:
    return f"w{multiplier:g}"


# --- Tab. 1 and Tab. 9: ImageNet ---------------------------------------------------------

register(Preset(
    name="resnet50",
    model=ClassifierSpec(BackboneSpec("resnet")),
    summary="ResNet-50 [30] (stride on the 3x3 convolution, as in [63]'s baseline).",
    cites=((1, "resnet50"),),
))

register(Preset(
    name="sasa-attention-resnet50",
    model=ClassifierSpec(BackboneSpec("attention", position_sensitive=False, attention_batch_norm=False)),
    summary="Conv-Stem + Attention [63]: every 3x3 conv of ResNet-50 replaced by 7x7 local "
            "self-attention with a query position term, no BN in the attention (Eq. 2).",
    cites=((1, "conv-stem-attention-sasa"),),
))

register(Preset(
    name="attention-resnet50-bn",
    model=ClassifierSpec(BackboneSpec("attention", position_sensitive=False, attention_batch_norm=True)),
    summary="Conv-Stem + Attention with BN in the attention layers (Tab. 1, BN column).",
    cites=((1, "conv-stem-attention-bn"),),
))

_PS_ROWS = {0.5: "ps-attention-w050", 0.75: "ps-attention-w075", 1.0: "ps-attention-w100",
            1.25: "ps-attention-w125", 1.5: "ps-attention-w150"}
for _w, _row in _PS_ROWS.items():
    register(Preset(
        name=f"ps-attention-resnet50-{_width_tag(_w)}",
        model=ClassifierSpec(BackboneSpec("attention", width_multiplier=_w, position_sensitive=True,
                              attention_batch_norm=True)),
        summary=f"Conv-Stem + PS-Attention, width x{_w:g}: 7x7 local position-sensitive "
                "self-attention (Eq. 3) with BN.",
        cites=((9, _row),) + (((1, "conv-stem-ps-attention"),) if _w == 1.0 else ()),
    ))

_AXIAL_ROWS = {0.375: "axial-conv-stem-w0375", 0.5: "axial-conv-stem-w050",
               0.75: "axial-conv-stem-w075", 1.0: "axial-conv-stem-w100"}
for _w, _row in _AXIAL_ROWS.items():
    register(Preset(
        name=f"axial-resnet-conv-stem-{_width_tag(_w)}",
        model=ClassifierSpec(BackboneSpec("axial", width_multiplier=_w, span=None)),
        summary=f"Conv-Stem + Axial-Attention, width x{_w:g} (S = 0.5, M = 0.75, L = 1.0): "
                "global span, position-sensitive, BN.",
        cites=((9, _row),) + (((1, "conv-stem-axial-attention"),) if _w == 0.5 else ()),
    ))

_FULL_ROWS = {0.5: "full-axial-w050", 0.75: "full-axial-w075", 1.0: "full-axial-w100"}
for _w, _row in _FULL_ROWS.items():
    register(Preset(
        name=f"full-axial-resnet-{_width_tag(_w)}",
        model=ClassifierSpec(BackboneSpec("axial", width_multiplier=_w, span=15, stem="axial")),
        summary=f"Full (stand-alone) Axial-ResNet, width x{_w:g}: three axial stem blocks, "
                "span m = 15 in every block.",
        cites=((9, _row),) + (((1, "full-axial-attention"),) if _w == 0.5 else ()),
    ))


# --- Segmentation: Tab. 2 (COCO), 4 (Mapillary Vistas), 6-8 (Cityscapes) ----------------------
# Input sizes are those the paper counts at: Cityscapes 1025 x 2049, COCO 1025 x 1025 and
# Mapillary Vistas 2177 x 2177 ("we resize the images so that the longest side equal to
# 2177", Sec. 4), padded square like Panoptic-DeepLab's evaluation crops.  Multi-scale (MS)
# rows run every scale plus its flip: COCO 0.5-1.5 and Mapillary 0.5-2.0, step 0.25 [18].

@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    num_classes: int
    input_size: tuple[int, int]
    ms_scales: tuple[float, ...]


COCO = Dataset("coco", "COCO", 133, (1025, 1025), (0.5, 0.75, 1.0, 1.25, 1.5))
CITYSCAPES = Dataset("cityscapes", "Cityscapes", 19, (1025, 2049), (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0))
MAPILLARY = Dataset("mapillary", "Mapillary Vistas", 65, (2177, 2177), (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0))
DATASETS = {d.name: d for d in (COCO, CITYSCAPES, MAPILLARY)}

AXIAL_DEEPLAB_SPAN = 65  # "we resort to a large span m = 65 in all our axial-attention blocks" (Sec. 3.2)
AXIAL_WIDTHS = {"s": 0.5, "m": 0.75, "l": 1.0, "xl": 2.0}


def axial_backbone(size: str, span: int | None = AXIAL_DEEPLAB_SPAN, output_stride: int = 16):
    return BackboneSpec("axial", width_multiplier=AXIAL_WIDTHS[size], stem="three_conv",
                        span=span, output_stride=output_stride)


def register_deeplab(name: str, backbone: BackboneSpec, dataset: Dataset, summary: str, cites,
                     aspp: bool = False, decoder: str = "dual", multi_scale: bool = False):
    register(Preset(
        name=name,
        model=PanopticDeepLabSpec(backbone, dataset.num_classes, aspp=aspp, decoder=decoder),
        summary=summary,
        cites=tuple(cites),
        input_size=dataset.input_size,
        inference_scales=dataset.ms_scales if multi_scale else (1.0,),
        flip=multi_scale,
    ))


XCEPTION71 = BackboneSpec("xception", depth=71, output_stride=16)
RESNET_DEEPLAB = {d: BackboneSpec("resnet", depth=d, stem="three_conv", output_stride=16) for d in (50, 101)}

# Tab. 2 (COCO val) and Tab. 4 (Mapillary Vistas val).
for _table, _dataset in ((2, COCO), (4, MAPILLARY)):
    for _ms in (False, True):
        _suffix, _what = ("-ms", f"{_dataset.title}, multi-scale") if _ms else ("", _dataset.title)
        register_deeplab(f"panoptic-deeplab-x71-{_dataset.name}{_suffix}", XCEPTION71, _dataset,
                         f"Panoptic-DeepLab [18], Xception-71, separable ASPP, {_what}",
                         [(_table, f"panoptic-deeplab-x71{_suffix}")], aspp=True, multi_scale=_ms)
        register_deeplab(f"axial-deeplab-l-{_dataset.name}{_suffix}", axial_backbone("l"), _dataset,
                         f"Axial-DeepLab-L, {_what}", [(_table, f"axial-deeplab-l{_suffix}")],
                         multi_scale=_ms)
for _size in ("s", "m"):
    register_deeplab(f"axial-deeplab-{_size}-coco", axial_backbone(_size), COCO,
                     f"Axial-DeepLab-{_size.upper()}, COCO", [(2, f"axial-deeplab-{_size}")])

# Tab. 6 (attention variants), Tab. 7 (span), Tab. 8 (output stride, Axial-Decoder): Cityscapes.
for _size in ("s", "m", "l", "xl"):
    _cites = [(6, f"axial-deeplab-{_size}")]
    if _size == "l":
        _cites += [(7, "axial-resnet-l-span65"), (8, "axial-resnet-l-os16")]
    register_deeplab(f"axial-deeplab-{_size}-cityscapes", axial_backbone(_size), CITYSCAPES,
                     f"Axial-DeepLab-{_size.upper()} (span 65, output stride 16, dual decoders), Cityscapes",
                     _cites)
for _aspp in (False, True):
    _suffix = "-aspp" if _aspp else ""
    register_deeplab(f"resnet50-deeplab{_suffix}-cityscapes", RESNET_DEEPLAB[50], CITYSCAPES,
                     "Panoptic-DeepLab with ResNet-50 (paper's implementation)" + (" and ASPP" if _aspp else ""),
                     [(6, f"resnet50{_suffix}")], aspp=_aspp)
    for _ps, _row in ((False, "attention-sasa"), (True, "ps-attention")):
        register_deeplab(
            f"{'ps-' if _ps else ''}attention-deeplab{_suffix}-cityscapes",
            BackboneSpec("attention", stem="three_conv", position_sensitive=_ps, attention_batch_norm=True,
                         output_stride=16),
            CITYSCAPES,
            f"Panoptic-DeepLab with the {'PS-' if _ps else ''}Attention backbone (7x7 local "
            "self-attention ResNet-50)" + (" and ASPP" if _aspp else ""),
            [(6, f"{_row}{_suffix}")], aspp=_aspp)
register_deeplab("resnet101-deeplab-cityscapes", RESNET_DEEPLAB[101], CITYSCAPES,
                 "Panoptic-DeepLab with ResNet-101 (Tab. 7 baseline)", [(7, "resnet101")])
for _span in (5, 9, 17, 33):
    register_deeplab(f"axial-deeplab-l-span{_span}-cityscapes", axial_backbone("l", span=_span), CITYSCAPES,
                     f"Axial-DeepLab-L with axial span {_span}, Cityscapes", [(7, f"axial-resnet-l-span{_span}")])
register_deeplab("axial-deeplab-l-os32-cityscapes", axial_backbone("l", output_stride=32), CITYSCAPES,
                 "Axial-DeepLab-L at output stride 32, dual decoders", [(8, "axial-resnet-l-os32")])
register_deeplab("axial-deeplab-l-ad-cityscapes", axial_backbone("l"), CITYSCAPES,
                 "Axial-DeepLab-L with the Axial-Decoder, output stride 16", [(8, "axial-resnet-l-os16-ad")],
                 decoder="axial")
register_deeplab("axial-deeplab-l-os32-ad-cityscapes", axial_backbone("l", output_stride=32), CITYSCAPES,
                 "Axial-DeepLab-L with the Axial-Decoder, output stride 32", [(8, "axial-resnet-l-os32-ad")],
                 decoder="axial")
register_deeplab("panoptic-deeplab-x71-cityscapes", XCEPTION71, CITYSCAPES,
                 "Panoptic-DeepLab [18], Xception-71, separable ASPP, output stride 16",
                 [(8, "xception71-aspp-os16")], aspp=True)


# --- ImageNet initialisation (not paper rows) --------------------------------------------------
# Sec. 4: "ImageNet-pretrained Axial-ResNets" are converted to Axial-DeepLab.  The ImageNet model
# of Axial-DeepLab-S/M/L/XL is its own backbone, with its stem of three 3x3 convolutions and span
# 65, as a classifier at output stride 32 (training/transfer.py imagenet_spec): the same
# variables, so its weights initialise the panoptic model (run_all.py --init-from).  Pretrain one
# with `python -m training.pretrain axial-deeplab-s-imagenet --data-dir DATA`.

for _size in AXIAL_WIDTHS:
    register(Preset(
        name=f"axial-deeplab-{_size}-imagenet",
        model=ClassifierSpec(dataclasses.replace(axial_backbone(_size), output_stride=32)),
        summary=f"ImageNet classifier of Axial-DeepLab-{_size.upper()}'s backbone (three-conv stem, span 65), "
                "which initialises it.",
        cites=(), origin="imagenet-init",
        source=f"Sec. 4 (ImageNet-pretrained Axial-ResNets); the backbone of axial-deeplab-{_size}-cityscapes",
    ))


# --- deeplab2's models (not paper rows): the released checkpoints' layouts ---------------------
# Sources: deeplab2 (google-research/deeplab2, commit 64bc1c1a) model/encoder/
# axial_resnet_instances.py (the named instances, i.e. get_model(name)) and its test, which pins
# each one's trainable parameters at 224 x 224 without a classifier (tests/test_deeplab2.py
# checks them); the Cityscapes models follow configs/cityscapes/axial_deeplab/*.textproto.
# Backbones are deeplab2's encoders in classification mode (endpoints stage1..5 / res1..5) at
# get_model's default output stride 16.

_INSTANCES = "deeplab2 model/encoder/axial_resnet_instances.py"
_DEEPLAB2_BACKBONES = {
    "resnet50": (deeplab2.RESNET50, "ResNet50 (get_model('resnet50'))",
                 "ResNet-50 in deeplab2's layout: 7x7 stem without max-pool, strided first blocks."),
    "resnet50-beta": (deeplab2.RESNET50_BETA, "ResNet50Beta (get_model('resnet50_beta'))",
                      "ResNet-50-Beta: ResNet-50 with the inception stem of three 3x3 convs."),
    "axial-resnet-s": (deeplab2.AXIAL_RESNET_S, "AxialResNetS (get_model('axial_resnet_s'))",
                       "Axial-ResNet-S of deeplab2: ResNet-50 (7x7 stem) with every block axial, width x0.5."),
    "axial-resnet-l": (deeplab2.AXIAL_RESNET_L, "AxialResNetL (get_model('axial_resnet_l'))",
                       "Axial-ResNet-L of deeplab2: ResNet-50 (7x7 stem) with every block axial."),
    "axial-deeplab-s": (deeplab2.AXIAL_DEEPLAB_S, "AxialDeepLabS (get_model('axial_deeplab_s'))",
                        "Axial-DeepLab-S's backbone in deeplab2: Axial-ResNet-S with the inception stem."),
    "axial-deeplab-l": (deeplab2.AXIAL_DEEPLAB_L, "AxialDeepLabL (get_model('axial_deeplab_l'))",
                        "Axial-DeepLab-L's backbone in deeplab2: Axial-ResNet-L with the inception stem."),
    "max-deeplab-s-backbone": (deeplab2.MAX_DEEPLAB_S_BACKBONE,
                               "MaXDeepLabSBackbone (get_model('max_deeplab_s_backbone'))",
                               "MaX-DeepLab-S backbone: ResNet-50-Beta with axial blocks from stride 16 on."),
    "max-deeplab-l-backbone": (deeplab2.MAX_DEEPLAB_L_BACKBONE,
                               "MaXDeepLabLBackbone (get_model('max_deeplab_l_backbone'))",
                               "MaX-DeepLab-L backbone: Wide-ResNet-41 with axial blocks from stride 16 on "
                               "and one stack of the stacked decoder (endpoint backbone_output)."),
}
for _x in (1, 3, 4.5):
    _tag = f"1-1-{_x:g}"
    _DEEPLAB2_BACKBONES[f"swidernet-{_tag}"] = (
        deeplab2.SWIDERNET.with_overrides(backbone_layer_multiplier=_x),
        f"SWideRNet (get_model('swidernet', backbone_layer_multiplier={_x:g}))",
        f"SWideRNet-({_tag.replace('-', ', ')}) without SE or SAC: Wide-ResNet-41, layers after the stem x{_x:g}.")
    _DEEPLAB2_BACKBONES[f"axial-swidernet-{_tag}"] = (
        deeplab2.AXIAL_SWIDERNET.with_overrides(backbone_layer_multiplier=_x),
        f"AxialSWideRNet (get_model('axial_swidernet', backbone_layer_multiplier={_x:g}))",
        f"Axial-SWideRNet-({_tag.replace('-', ', ')}): SWideRNet with axial blocks from stride 16 on.")
for _name, (_spec, _class, _summary) in _DEEPLAB2_BACKBONES.items():
    register(Preset(name=f"deeplab2-{_name}", model=_spec, summary=_summary, cites=(), origin="deeplab2",
                    source=f"{_INSTANCES}: {_class}"))

# The Cityscapes model zoo (g3doc/projects/axial_deeplab.md = ../shared/paper/003_aa2f8f118d60f19e.txt):
# Panoptic-DeepLab on each backbone at output stride 16, 19 classes, evaluated at 1025 x 2049.
for _name, _config in (("axial-swidernet-1-1-1", "axial_swidernet_1_1_1_os16"),
                       ("axial-swidernet-1-1-3", "axial_swidernet_1_1_3_os16"),
                       ("axial-swidernet-1-1-4.5", "axial_swidernet_1_1_4.5_os16"),
                       ("max-deeplab-s-backbone", "max_deeplab_s_backbone_os16"),
                       ("max-deeplab-l-backbone", "max_deeplab_l_backbone_os16")):
    register(Preset(
        name=f"deeplab2-{_name}-cityscapes",
        model=Deeplab2PanopticSpec(PRESETS[f"deeplab2-{_name}"].model, CITYSCAPES.num_classes),
        summary=f"Panoptic-DeepLab with deeplab2's {_name} backbone, Cityscapes model zoo (output stride 16).",
        cites=(), input_size=CITYSCAPES.input_size, origin="deeplab2",
        source=f"deeplab2 configs/cityscapes/axial_deeplab/{_config}.textproto",
        zoo_row=_name.replace("4.5", "4p5")))  # row ids of reported/model_zoo.csv are [a-z0-9-]


# --- the first author's PyTorch Axial-ResNets (not paper rows): its checkpoints' layout -------
# csrhddlam/axial-deeplab, lib/models/axialnet.py (commit 79088edb); models/axial_pytorch.py.
for _name, _spec in (("axial26s", axial_pytorch.AXIAL26S), ("axial50s", axial_pytorch.AXIAL50S),
                     ("axial50m", axial_pytorch.AXIAL50M), ("axial50l", axial_pytorch.AXIAL50L)):
    register(Preset(
        name=f"pytorch-{_name}", model=_spec, cites=(), origin="pytorch",
        summary=f"The PyTorch re-implementation's {_name}: conv-stem Axial-ResNet with max-pool, blocks "
                f"{_spec.num_blocks}, width x{_spec.width_multiplier:g}, strided blocks average-pooled.",
        source=f"csrhddlam/axial-deeplab lib/models/axialnet.py: {_name}"))
