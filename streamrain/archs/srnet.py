"""SRNet: streamrain's own fast deraining network.

Not a port: designed here for the speed/quality front on CPUs (channels_last, bf16) and TensorRT.
The frame is folded into a 2x2 space-to-depth ("Haar-domain" up to a fixed linear map, which the
first convolution absorbs) so that every 3x3 convolution works at half or quarter resolution,
where rain streaks of one or two pixels width are still represented exactly in the channels.
The network predicts the rain layer and subtracts it: output = clamp(x - rain, 0, 1).

Cost with the default arguments: about 8.9 GMAC (17.8 GFLOP) per 1280x720 frame.

An optional **deep stage** (``deep_blocks`` > 0) runs after the quarter-resolution blocks at eighth
resolution, ``deep_channels`` wide, and adds its result back to the quarter-resolution features
(its last layer starts at zero). Why: heavy rain (dense streaks in several directions, a veil)
is judged from a wider neighbourhood than three blocks at quarter resolution see, and a 3x3
convolution of 2C channels at eighth resolution costs what one of C channels costs at quarter
resolution while seeing twice as far. Frames are padded to multiples of 8 for it (``pad_multiple``);
a quarter-resolution map of odd size (a 4:2:0 picture that is a multiple of 4 only) is extended
by one edge row or column inside the network and cropped back.

``SRNet.inference_form(dtype)`` is the same function refactored for CPU inference (``FoldedSRNet``):
measured ~1.2x faster per frame than the training form under bf16 autocast on this project's CPU.
``SRNet.yuv420_form(dtype, yuv)`` (``Yuv420SRNet``) takes and returns decoded 4:2:0 pictures as they
are: because the network starts and ends in space-to-depth form, at the chroma planes' resolution,
the colour conversions fold into its first and last convolutions.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from streamrain.archs.frozen_conv import FrozenConv
from streamrain.io.frames import YuvMatrix


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _even_padded(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its last row and column repeated where its height or width is odd."""
    height, width = x.shape[-2:]
    if height % 2 == 0 and width % 2 == 0:
        return x
    return F.pad(x, (0, width % 2, 0, height % 2), mode="replicate")


class SRNet(nn.Module):
    input_order = "rgb"
    clamps_output = True
    adopts = ("srnet",)  # another SRNet's weights, as far as they fit (``adopt``)

    def __init__(self, *, half_channels: int = 24, quarter_channels: int = 48, blocks: int = 3,
                 deep_channels: int = 0, deep_blocks: int = 0):
        super().__init__()
        if deep_blocks and deep_channels <= 0:
            raise ValueError(f"deep_blocks={deep_blocks} needs deep_channels > 0")
        self.pad_multiple = 8 if deep_blocks else 4
        self.head = nn.Conv2d(12, half_channels, 3, padding=1)
        self.down = nn.Conv2d(4 * half_channels, quarter_channels, 1)
        self.body = nn.Sequential(*[_ResBlock(quarter_channels) for _ in range(blocks)])
        self.deep_blocks = deep_blocks
        if deep_blocks:
            self.deep_down = nn.Conv2d(4 * quarter_channels, deep_channels, 1)
            self.deep_body = nn.Sequential(*[_ResBlock(deep_channels) for _ in range(deep_blocks)])
            self.deep_up = nn.Conv2d(deep_channels, 4 * quarter_channels, 1)
            nn.init.zeros_(self.deep_up.weight)
            nn.init.zeros_(self.deep_up.bias)
        self.up = nn.Conv2d(quarter_channels, 4 * half_channels, 1)
        self.tail = nn.Conv2d(half_channels, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - F.pixel_shuffle(self.rain_s2d(F.pixel_unshuffle(x, 2)), 2)).clamp(0.0, 1.0)

    def rain_s2d(self, x_s2d: torch.Tensor) -> torch.Tensor:
        """The rain layer, both in 2x2 space-to-depth form (channel ``4c + 2i + j``)."""
        half = F.relu(self.head(x_s2d))
        quarter = F.relu(self.down(F.pixel_unshuffle(half, 2)))
        quarter = self.body(quarter)
        if self.deep_blocks:
            deep = self.deep_body(F.relu(self.deep_down(F.pixel_unshuffle(_even_padded(quarter), 2))))
            height, width = quarter.shape[-2:]
            quarter = quarter + F.pixel_shuffle(self.deep_up(deep), 2)[..., :height, :width]
        half = F.relu(half + F.pixel_shuffle(self.up(quarter), 2))
        return self.tail(half)

    def adopt(self, other: "SRNet") -> None:
        """Start from another SRNet of the same widths: its head, down, up and tail, its first
        ``blocks`` blocks (a block it lacks keeps its initialisation), and its deep stage where
        both have one of the same width. A new deep stage starts at zero (adds nothing), so an
        SRNet adopting the same SRNet plus a deep stage computes exactly its output."""
        if (other.head.out_channels, other.down.out_channels) != (self.head.out_channels, self.down.out_channels):
            raise ValueError(f"cannot adopt an SRNet of {other.head.out_channels}/{other.down.out_channels} "
                             f"channels: this one has {self.head.out_channels}/{self.down.out_channels}")
        with torch.no_grad():
            for name in ("head", "down", "up", "tail"):
                getattr(self, name).load_state_dict(getattr(other, name).state_dict())
            for mine, theirs in zip(self.body, other.body):
                mine.load_state_dict(theirs.state_dict())
            if self.deep_blocks and other.deep_blocks and \
                    other.deep_down.out_channels == self.deep_down.out_channels:
                for name in ("deep_down", "deep_up"):
                    getattr(self, name).load_state_dict(getattr(other, name).state_dict())
                for mine, theirs in zip(self.deep_body, other.deep_body):
                    mine.load_state_dict(theirs.state_dict())

    def inference_form(self, dtype: torch.dtype) -> "FoldedSRNet":
        return FoldedSRNet(self, dtype)

    def yuv420_form(self, dtype: torch.dtype, yuv: YuvMatrix) -> "Yuv420SRNet":
        return Yuv420SRNet(self, dtype, yuv)


def _frozen_residual_blocks(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """Residual blocks of ``FrozenConv`` pairs (conv1, conv2, conv1, ...): x += conv2(relu(conv1(x))),
    in place, the ReLU and the add inside the convolutions."""
    for conv1, conv2 in zip(convs[::2], convs[1::2]):
        x = conv2.add_to_(x, conv1(x, relu=True))
    return x


def _fold_space_to_depth(weight: torch.Tensor) -> torch.Tensor:
    """A convolution over ``pixel_unshuffle(x, 2)`` is a stride-2 convolution over ``x`` with a kernel
    twice as large: (O, 4C, kh, kw) -> (O, C, 2kh, 2kw), tap (2dy+i, 2dx+j) from channel 4c+2i+j."""
    out_ch, in4, kh, kw = weight.shape
    w = weight.reshape(out_ch, in4 // 4, 2, 2, kh, kw).permute(0, 1, 4, 2, 5, 3)
    return w.reshape(out_ch, in4 // 4, 2 * kh, 2 * kw)


def _frozen(t: torch.Tensor, dtype: torch.dtype) -> nn.Parameter:
    t = t.detach().to(dtype)
    return nn.Parameter(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t,
                        requires_grad=False)


class _FrozenTrunk(nn.Module):
    """SRNet between head and tail, for the inference forms: half resolution in and out."""

    def __init__(self, net: SRNet, dtype: torch.dtype):
        super().__init__()
        self.down = FrozenConv(_fold_space_to_depth(net.down.weight), net.down.bias, dtype, stride=2)
        self.body = nn.ModuleList(FrozenConv(conv.weight, conv.bias, dtype, padding=1)
                                  for block in net.body for conv in (block.conv1, block.conv2))
        # ``up`` then depth-to-space is one transposed convolution (2x2 kernel, stride 2) that writes
        # the half-resolution picture directly: 4C output channels 4o + 2i + j are (o, tap i, j).
        # Measured ~0.8 ms per 640x360 frame less than the 1x1 convolution and a strided add.
        # Its bias depends on the tap, so it is added as a picture (cached per size).
        quarter_channels, half_channels = net.up.in_channels, net.up.out_channels // 4
        up = net.up.weight.reshape(half_channels, 2, 2, quarter_channels).permute(3, 0, 1, 2)
        self.up_w = _frozen(up, dtype)
        self.register_buffer("up_bias_taps", net.up.bias.detach().reshape(half_channels, 2, 2).to(dtype),
                             persistent=False)
        self._up_bias_pictures: dict[tuple, torch.Tensor] = {}
        self.deep = net.deep_blocks > 0
        if self.deep:  # the same folds, one level down
            self.deep_down = FrozenConv(_fold_space_to_depth(net.deep_down.weight), net.deep_down.bias,
                                        dtype, stride=2)
            self.deep_body = nn.ModuleList(FrozenConv(conv.weight, conv.bias, dtype, padding=1)
                                           for block in net.deep_body for conv in (block.conv1, block.conv2))
            deep_channels = net.deep_up.in_channels
            self.deep_up_w = _frozen(net.deep_up.weight.reshape(quarter_channels, 2, 2, deep_channels)
                                     .permute(3, 0, 1, 2), dtype)
            self.register_buffer("deep_up_bias_taps", net.deep_up.bias.detach().reshape(
                quarter_channels, 2, 2).to(dtype), persistent=False)

    def _bias_picture(self, taps: torch.Tensor, height: int, width: int) -> torch.Tensor:
        key = (taps.shape[0], height, width)
        picture = self._up_bias_pictures.get(key)
        if picture is None:
            if len(self._up_bias_pictures) >= 8:  # a folder of many sizes: keep memory bounded
                self._up_bias_pictures.clear()
            picture = taps.repeat(1, height // 2, width // 2)[None]
            picture = self._up_bias_pictures[key] = picture.contiguous(memory_format=torch.channels_last)
        return picture

    def forward(self, half: torch.Tensor) -> torch.Tensor:
        quarter = _frozen_residual_blocks(self.body, self.down(half, relu=True))
        if self.deep:
            height, width = quarter.shape[2:]
            padded = _even_padded(quarter).contiguous(memory_format=torch.channels_last)
            deep = _frozen_residual_blocks(self.deep_body, self.deep_down(padded, relu=True))
            up = F.conv_transpose2d(deep, self.deep_up_w, stride=2)
            up.add_(self._bias_picture(self.deep_up_bias_taps, *up.shape[2:]))
            quarter = quarter.add_(up[..., :height, :width])
        half.add_(F.conv_transpose2d(quarter, self.up_w, stride=2))
        return half.add_(self._bias_picture(self.up_bias_taps, *half.shape[2:])).relu_()


class FoldedSRNet(nn.Module):
    """SRNet for inference: the same function as ``SRNet.forward``, exactly so in fp32.

    Why it is faster on CPUs: the space-to-depth steps are folded into stride-2 convolutions (no
    pass over memory to reorder pixels), weights are cast to the compute dtype once instead of per
    call under autocast, activations and residual adds run inside the convolutions (``FrozenConv``),
    and only the final residual goes back to float32 (mixed-dtype elementwise ops take a slow
    path). Takes and returns float32; computes in ``dtype``.
    Its weights are a frozen copy: build it again after changing the SRNet's.
    """

    input_order = SRNet.input_order
    clamps_output = True

    def __init__(self, net: SRNet, dtype: torch.dtype):
        super().__init__()
        self.dtype, self.pad_multiple = dtype, net.pad_multiple
        self.head = FrozenConv(_fold_space_to_depth(net.head.weight), net.head.bias, dtype,
                               stride=2, padding=2)
        self.trunk = _FrozenTrunk(net, dtype)
        self.tail = FrozenConv(net.tail.weight, net.tail.bias, dtype, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.trunk(self.head(x.to(self.dtype), relu=True))
        rain = F.pixel_shuffle(self.tail(half), 2)
        return (x - rain.float()).clamp_(0.0, 1.0)


def _rgb_from_yuv_s2d(kr: float, kb: float) -> torch.Tensor:
    """(12, 6): space-to-depth RGB from [Y in space-to-depth (4), Cb, Cr], all normalised (Y in
    [0, 1], chroma in [-0.5, 0.5]); each chroma sample serves its 2x2 block of luma samples."""
    kg = 1.0 - kr - kb
    per_pixel = torch.tensor([[1.0, 0.0, 2 * (1 - kr)],
                              [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg],
                              [1.0, 2 * (1 - kb), 0.0]], dtype=torch.float64)
    m = torch.zeros(12, 6, dtype=torch.float64)
    for c in range(3):
        for k in range(4):
            m[4 * c + k, k] = per_pixel[c, 0]
            m[4 * c + k, 4:] = per_pixel[c, 1:]
    return m


def _yuv_s2d_from_rgb(kr: float, kb: float) -> torch.Tensor:
    """(6, 12): the inverse direction; each chroma sample is the mean over its 2x2 block."""
    kg = 1.0 - kr - kb
    luma = torch.tensor([kr, kg, kb], dtype=torch.float64)
    cb = (torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) - luma) / (2 * (1 - kb))
    cr = (torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64) - luma) / (2 * (1 - kr))
    m = torch.zeros(6, 12, dtype=torch.float64)
    for c in range(3):
        for k in range(4):
            m[k, 4 * c + k] = luma[c]
            m[4, 4 * c + k] = cb[c] / 4
            m[5, 4 * c + k] = cr[c] / 4
    return m


class Yuv420SRNet(nn.Module):
    """SRNet on decoded 4:2:0 pictures: uint8 I420 ``(B, H * 3 // 2, W)`` in and out, H and W
    multiples of 4 (other sizes go through RGB: ``VideoSource.items(keep_yuv420=True)`` keeps 4:2:0
    only for these).

    The same function as converting to RGB (chroma repeated over its 2x2 block), running SRNet and
    converting back (chroma averaged over the block), except that the output is clamped in Y'CbCr
    rather than RGB; exactly so in fp32 where no clamp is reached. Why: the conversions cost a pass
    over every pixel each way in swscale (~3 ms per 640x360 frame here, as much as the encoder),
    and fewer channels go in and out of the first and last convolutions.

    Works on code values, so that the only passes over the picture outside the convolutions are
    the moves between I420 planes and the network's channels_last layout, one conversion to the
    compute dtype, and one subtraction and conversion back:
    - In: the codes go into a buffer whose one-sample border holds each channel's offset (black),
      and the first convolution runs unpadded on it with the offset folded into its bias and the
      range's scale into its weights: the same function as zero-padding ``code - offset``.
    - Out: the last convolution predicts the rain in code units, less 0.5, so that truncating
      ``code - rain`` to uint8 (after clamping) rounds it to the nearest code (halves up).
    """

    def __init__(self, net: SRNet, dtype: torch.dtype, yuv: YuvMatrix):
        super().__init__()
        self.dtype = dtype
        head, head_bias, tail, tail_bias, offset_codes = yuv420_head_and_tail(net.head, net.tail, yuv)
        self.register_buffer("offset_codes", offset_codes, persistent=False)
        self.head = FrozenConv(head, head_bias, dtype)
        self.trunk = _FrozenTrunk(net, dtype)
        self.tail = FrozenConv(tail, tail_bias, dtype, padding=1)

    def forward(self, i420_u8: torch.Tensor) -> torch.Tensor:
        bordered = bordered_codes(i420_u8, self.offset_codes)
        # uint8 codes are exact in bf16; the permuted views are channels_last (B, 6, h, w).
        half = self.trunk(self.head(bordered.permute(0, 3, 1, 2).to(self.dtype), relu=True))
        rain = self.tail(half)
        codes = bordered[:, 1:-1, 1:-1].permute(0, 3, 1, 2)
        return i420_from_codes(torch.sub(codes, rain.float()).clamp_(0, 255).to(torch.uint8))


def yuv420_head_and_tail(head: nn.Conv2d, tail: nn.Conv2d, yuv: YuvMatrix) -> tuple[torch.Tensor, ...]:
    """A network's first and last convolutions refolded for 4:2:0 codes (see ``Yuv420SRNet``): ``head``
    a convolution over RGB space-to-depth (12 channels in [0, 1]), ``tail`` one that predicts the
    rain in it. Returns (head weight, head bias) over the six code channels of ``bordered_codes``
    (to run unpadded on them), (tail weight, tail bias) giving the rain in code units less 0.5,
    and the six offset codes (black) of the border, uint8."""
    kr, kb = yuv.luma_weights
    if yuv.full_range:
        scale, offset = [255.0] * 6, [0.0] * 4 + [128.0] * 2
    else:
        scale, offset = [219.0] * 4 + [224.0] * 2, [16.0] * 4 + [128.0] * 2
    scale, offset = torch.tensor(scale, dtype=torch.float64), torch.tensor(offset, dtype=torch.float64)
    # head: codes -> normalised (/ scale) -> RGB space-to-depth -> the network's head.
    into_rgb = _rgb_from_yuv_s2d(kr, kb) / scale
    head_w = torch.einsum("oikl,ij->ojkl", head.weight.double(), into_rgb)
    head_b = head.bias.double() - torch.einsum("oikl,i->o", head_w, offset)
    # tail: the network's tail -> rain in RGB space-to-depth -> Y'CbCr (normalised) -> codes (* scale).
    out_of_rgb = _yuv_s2d_from_rgb(kr, kb) * scale[:, None]
    tail_w = torch.einsum("ji,iokl->jokl", out_of_rgb, tail.weight.double())
    tail_b = out_of_rgb @ tail.bias.double() - 0.5
    return head_w, head_b, tail_w, tail_b, offset.to(torch.uint8)


def bordered_codes(i420_u8: torch.Tensor, offset_codes: torch.Tensor) -> torch.Tensor:
    """uint8 I420 ``(B, H * 3 // 2, W)`` -> ``(B, H/2 + 2, W/2 + 2, 6)`` uint8: at each chroma
    position its four luma codes (channel 2i + j the sample at (2y + i, 2x + j), as pixel_unshuffle
    orders them), Cb and Cr, inside a one-sample border of ``offset_codes``. Its (B, 6, h, w)
    permutation is channels_last."""
    batch, rows, width = i420_u8.shape
    height = rows * 2 // 3
    if rows % 6 or width % 4 or i420_u8.dtype != torch.uint8:
        raise ValueError(f"expected uint8 I420 (B, H * 3 // 2, W) with H and W multiples of 4; "
                         f"got {i420_u8.dtype} {tuple(i420_u8.shape)}")
    h2, w2 = height // 2, width // 2
    flat = i420_u8.reshape(batch, -1)
    bordered = i420_u8.new_empty(batch, h2 + 2, w2 + 2, 6)
    for edge in (bordered[:, 0], bordered[:, -1], bordered[:, :, 0], bordered[:, :, -1]):
        edge.copy_(offset_codes)
    codes = bordered[:, 1:-1, 1:-1]
    # Each pair of horizontal neighbours (j = 0, 1) moves as one int16: a copy with 2-byte runs
    # is ~2x faster.
    codes.view(torch.int16)[..., :2].copy_(
        flat[:, :height * width].view(torch.int16).view(batch, h2, 2, w2).permute(0, 1, 3, 2))
    codes[..., 4:].copy_(flat[:, height * width:].view(batch, 2, h2, w2).permute(0, 2, 3, 1))
    return bordered


def i420_from_codes(codes: torch.Tensor) -> torch.Tensor:
    """The inverse of ``bordered_codes`` without its border: uint8 ``(B, 6, h, w)`` -> I420
    ``(B, 3h, 2w)``."""
    batch, _, h2, w2 = codes.shape
    height, width = 2 * h2, 2 * w2
    hwc = codes.permute(0, 2, 3, 1).contiguous()  # no copy where it is channels_last already
    result = hwc.new_empty(batch, height * width * 3 // 2)
    result[:, :height * width].view(torch.int16).view(batch, h2, 2, w2).copy_(
        hwc.view(torch.int16)[..., :2].permute(0, 1, 3, 2))
    result[:, height * width:].view(batch, 2, h2, w2).copy_(hwc[..., 4:].permute(0, 3, 1, 2))
    return result.view(batch, height * 3 // 2, width)
