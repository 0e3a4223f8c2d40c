"""Network code only. Every architecture is listed here by name, explicitly.

Tensor contract for every class in ARCHS: ``forward(x)`` takes float32 ``(B, 3, H, W)`` in the
channel order named by the class attribute ``input_order`` ("rgb" or "bgr"), with H and W
multiples of ``pad_multiple``, and returns the derained image in the same layout. The class
attribute ``clamps_output`` says whether the network already clamps to [0, 1]. The runtime
wrapper (streamrain.runtime.wrapper) handles order, padding and clamping for users.
"""

from streamrain.archs.aimhnet import AIMHNet
from streamrain.archs.dpenet import DPENet
from streamrain.archs.remaen import ReMAEN
from streamrain.archs.sdsen import SDSEN
from streamrain.archs.spanet import SPANet
from streamrain.archs.srnet import SRNet
from streamrain.archs.trnet import TRNet

ARCHS: dict[str, type] = {
    "srnet": SRNet,
    "trnet": TRNet,
    "aimhnet": AIMHNet,
    "remaen": ReMAEN,
    "dpenet": DPENet,
    "spanet": SPANet,
    "sdsen": SDSEN,
}
