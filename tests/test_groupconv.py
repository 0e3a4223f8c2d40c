"""P4 group convolutions: GrouPy's parameter layout, filter-expansion rule, and rotation equivariance."""

from __future__ import annotations

import torch

from streamrain.archs.groupconv import P4ConvP4, P4ConvZ2


def _rot(t: torch.Tensor) -> torch.Tensor:
    return torch.rot90(t, 1, dims=(-2, -1))


def test_parameter_layout_matches_groupy():
    z2 = P4ConvZ2(3, 10, 5, padding=2)
    p4 = P4ConvP4(20, 10, 5, padding=2)
    assert {k: tuple(v.shape) for k, v in z2.state_dict().items()} == {"weight": (10, 3, 1, 5, 5), "bias": (10,)}
    assert {k: tuple(v.shape) for k, v in p4.state_dict().items()} == {"weight": (10, 20, 4, 5, 5), "bias": (10,)}


def test_filter_expansion_rule():
    torch.manual_seed(0)
    z2 = P4ConvZ2(2, 3, 3)
    p4 = P4ConvP4(2, 3, 3)
    wz, wp = z2.expanded_weight(), p4.expanded_weight()
    assert wz.shape == (12, 2, 3, 3) and wp.shape == (12, 8, 3, 3)
    for o in range(3):
        for r in range(4):
            torch.testing.assert_close(wz[o * 4 + r], torch.rot90(z2.weight[o, :, 0], r, dims=(-2, -1)))
            for c in range(2):
                for s in range(4):
                    expected = torch.rot90(p4.weight[o, c, (s - r) % 4], r, dims=(-2, -1))
                    torch.testing.assert_close(wp[o * 4 + r, c * 4 + s], expected)
    assert torch.equal(z2.expanded_bias(), z2.bias.repeat_interleave(4))


def test_rotation_equivariance():
    # Rotating the input a quarter turn rotates every output map and shifts the rotation axis by one.
    torch.manual_seed(1)
    z2 = P4ConvZ2(3, 4, 5, padding=2)
    p4 = P4ConvP4(4, 2, 5, padding=2)
    x = torch.randn(2, 3, 9, 7)
    with torch.no_grad():
        y = z2(x)
        assert y.shape == (2, 4, 4, 9, 7)
        torch.testing.assert_close(z2(_rot(x)), torch.roll(_rot(y), 1, dims=2), rtol=1e-5, atol=1e-5)
        f = torch.randn(2, 4, 4, 9, 7)
        g = p4(f)
        assert g.shape == (2, 2, 4, 9, 7)
        rotated_f = torch.roll(_rot(f), 1, dims=2)
        torch.testing.assert_close(p4(rotated_f), torch.roll(_rot(g), 1, dims=2), rtol=1e-5, atol=1e-5)
