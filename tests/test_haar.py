"""Haar DWT/IDWT: band formulas, exact inverse, and the pytorch_wavelets oracle (both AIMHNet orderings)."""

from __future__ import annotations

import pytest
import torch

from streamrain.archs.haar import dwt_band_major, haar_dwt, haar_idwt, idwt_interleaved


def test_band_formulas_on_one_block():
    # a=1 (top-left), b=2 (top-right), c=4 (bottom-left), d=8 (bottom-right)
    x = torch.tensor([[1.0, 2.0], [4.0, 8.0]]).reshape(1, 1, 2, 2)
    ll, high = haar_dwt(x)
    assert ll.flatten().tolist() == [7.5]
    assert high.flatten().tolist() == [-4.5, -2.5, 1.5]
    assert dwt_band_major(x).flatten().tolist() == [-4.5, -2.5, 1.5, 7.5]
    assert idwt_interleaved(torch.tensor([7.5, -4.5, -2.5, 1.5]).reshape(1, 4, 1, 1)).flatten().tolist() == [
        1.0, 2.0, 4.0, 8.0]


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 6, 10)])
def test_inverse_round_trip(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    ll, high = haar_dwt(x)
    assert ll.shape == (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    assert high.shape == (shape[0], shape[1], 3, shape[2] // 2, shape[3] // 2)
    torch.testing.assert_close(haar_idwt(ll, high), x, rtol=0, atol=1e-6)
    # The two AIMHNet orderings carry the same bands, so a regroup makes them inverse to each other.
    t = dwt_band_major(x)  # [band0, band1, band2, LL] x C
    c = shape[1]
    interleaved = t.reshape(shape[0], 4, c, *t.shape[-2:]).roll(1, dims=1).transpose(1, 2).reshape_as(t)
    torch.testing.assert_close(idwt_interleaved(interleaved), x, rtol=0, atol=1e-6)


def test_idwt_interleaved_rejects_bad_channel_count():
    with pytest.raises(ValueError, match="multiple of 4"):
        idwt_interleaved(torch.zeros(1, 6, 2, 2))


@pytest.fixture(scope="module")
def wavelets():
    return pytest.importorskip(
        "pytorch_wavelets",
        reason="oracle needs the dev extra: pip install pytorch_wavelets==1.3.0 PyWavelets 'setuptools<81'",
    )


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 5, 7)])  # odd sides: "zero" mode pads bottom/right
def test_dwt_and_idwt_match_pytorch_wavelets(wavelets, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    yl, yh = wavelets.DWTForward(J=1, wave="haar", mode="zero")(x)
    ll, high = haar_dwt(x)
    torch.testing.assert_close(ll, yl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(high, yh[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(haar_idwt(ll, high), wavelets.DWTInverse(wave="haar")((yl, yh)), rtol=1e-5, atol=1e-6)


def test_aimhnet_orderings_match_pytorch_wavelets(wavelets):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, 6, generator=gen)
    yl, yh = wavelets.DWTForward(J=1, wave="haar")(x)
    band_major = torch.cat([yh[0][:, :, 0], yh[0][:, :, 1], yh[0][:, :, 2], yl], dim=1)
    torch.testing.assert_close(dwt_band_major(x), band_major, rtol=1e-5, atol=1e-6)

    packed = torch.randn(2, 12, 4, 3, generator=gen)  # 3 groups of (LL, band0, band1, band2)
    groups = packed.reshape(2, 3, 4, 4, 3)
    expected = wavelets.DWTInverse(wave="haar")((groups[:, :, 0].contiguous(), [groups[:, :, 1:].contiguous()]))
    torch.testing.assert_close(idwt_interleaved(packed), expected, rtol=1e-5, atol=1e-6)
