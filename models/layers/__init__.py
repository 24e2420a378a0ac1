"""Attention layers of the paper: axial (Sec. 3.2) and local stand-alone (Sec. 3.1)."""

from models.layers.axial_attention import AxialAttention
from models.layers.local_attention import LocalSelfAttention2D
from models.layers.position import MAX_SPAN, RelativePositionTable

__all__ = ["AxialAttention", "LocalSelfAttention2D", "RelativePositionTable", "MAX_SPAN"]
