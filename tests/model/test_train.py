"""Training configuration errors and the augmentation it uses (the training itself: test_pipeline.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from servetune.cli import app
from servetune.model.augment import Augmentation, augment, random_downscale
from servetune.model.backbones import build_backbone
from servetune.model.train import TrainConfig, TrainError, mix_batch, model_spec, train


def test_bad_configurations_are_clear_errors(tiny_food11, tmp_path):
    with pytest.raises(TrainError, match="unknown backbone 'b7'"):
        train(TrainConfig(data=tiny_food11, out=tmp_path, backbone="b7"))
    with pytest.raises(TrainError, match="finetune_blocks must be 1..16 for lite0"):
        train(TrainConfig(data=tiny_food11, out=tmp_path, finetune_blocks=17))
    with pytest.raises(TrainError, match=r"checkpoint\.pt: no checkpoint to resume from"):
        train(TrainConfig(data=tiny_food11, out=tmp_path, resume=True))


def test_cli_train_on_a_folder_without_validation_split(make_food11, tmp_path):
    data = make_food11("flat", per_class=1, splits=("training",))
    result = CliRunner().invoke(app, ["model", "train", "--data", str(data), "--out", str(tmp_path / "out"),
                                      "--input-size", "64", "--threads", "1"])
    assert result.exit_code != 0
    assert "missing split folder 'validation'" in result.output and "Traceback" not in result.output


def test_augmented_views_have_the_network_shape_and_vary(tiny_food11):
    spec = model_spec(TrainConfig(data=tiny_food11, out=tiny_food11, input_size=64))
    image = Image.open(next((tiny_food11 / "training").glob("3_*.jpg"))).convert("RGB")
    rng = np.random.default_rng(0)
    views = [augment(image, spec, rng, Augmentation()) for _ in range(4)]
    assert all(view.shape == (3, 64, 64) and view.dtype == np.float32 for view in views)
    assert all(-1.0 <= view.min() and view.max() <= 1.0 for view in views)  # (x - 0.5) / 0.5
    assert not np.allclose(views[0], views[1])
    again = augment(image, spec, np.random.default_rng(0), Augmentation())
    np.testing.assert_array_equal(again, views[0])  # seeded: reproducible


def test_random_downscale_shrinks_large_photos_only():
    rng = np.random.default_rng(1)
    always = Augmentation(downscale_probability=1.0, downscale_min_side=40)
    large = Image.new("RGB", (400, 300))
    assert 40 <= min(random_downscale(large, rng, always).size) < 300
    small = Image.new("RGB", (40, 40))
    assert random_downscale(small, rng, always).size == (40, 40)
    never = Augmentation(downscale_probability=0.0)
    assert random_downscale(large, rng, never).size == (400, 300)


def test_augment_every_epoch_trains_the_top_on_new_views_and_keeps_the_bottom_frozen(tiny_food11, tmp_path):
    config = TrainConfig(data=tiny_food11, out=tmp_path, input_size=48, views=1, augment_every_epoch=True,
                         finetune_blocks=2, head_epochs=1, finetune_epochs=2, patience=5, batch_size=16, threads=1)
    path = train(config)
    trained = torch.load(path, weights_only=False)["state_dict"]
    start = build_backbone("lite0", 11).state_dict()
    assert torch.equal(trained["_blocks.0._depthwise_conv.weight"], start["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(trained["_bn0.running_mean"], start["_bn0.running_mean"])  # frozen BN stays ImageNet's
    assert not torch.equal(trained["_blocks.15._project_conv.weight"], start["_blocks.15._project_conv.weight"])
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    finetune = summary["stages"][1]
    assert summary["config"]["augment_every_epoch"] is True
    assert [row["epoch"] for row in finetune["history"]] == [1, 2]


def test_mixup_blends_each_example_with_a_partner_from_the_batch():
    torch.manual_seed(0)
    inputs = torch.stack([torch.full((2, 3, 3), float(i)) for i in range(8)]).half()  # example i is all i
    mixed, partner, weight = mix_batch(inputs, 0.4, torch.Generator().manual_seed(1))
    assert 0.0 < weight < 1.0 and mixed.dtype == torch.float32 and mixed.shape == inputs.shape
    assert sorted(partner.tolist()) == list(range(8))
    expected = weight * torch.arange(8.0) + (1 - weight) * partner.float()
    torch.testing.assert_close(mixed[:, 0, 0, 0], expected)
    unmixed, _, one = mix_batch(inputs, 0.0, torch.Generator())
    assert one == 1.0 and torch.equal(unmixed, inputs.float())


def test_cli_trains_with_mixup(tiny_food11, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["model", "train", "--data", str(tiny_food11), "--out", str(out),
                                      "--input-size", "48", "--views", "1", "--finetune-blocks", "2",
                                      "--head-epochs", "1", "--finetune-epochs", "1", "--mixup", "0.4",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["config"]["mixup"] == 0.4 and len(summary["stages"][1]["history"]) == 1
    bad = CliRunner().invoke(app, ["model", "train", "--data", str(tiny_food11), "--out", str(out), "--mixup", "-1"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_init_from_trains_a_trained_model_further(tiny_food11, tmp_path):
    first = train(TrainConfig(data=tiny_food11, out=tmp_path / "first", input_size=32, views=1, finetune_blocks=2,
                              head_epochs=1, finetune_epochs=1, batch_size=16, threads=1))
    start = torch.load(first, weights_only=False)["state_dict"]
    again = train(TrainConfig(data=tiny_food11, out=tmp_path / "again", input_size=32, views=1, finetune_blocks=2,
                              head_epochs=1, finetune_epochs=1, head_lr=1e-6, finetune_lr=1e-6, batch_size=16,
                              threads=1, init_from=first))
    continued = torch.load(again, weights_only=False)["state_dict"]
    # a tiny learning rate: the head stays the trained one, far from a fresh random head
    assert torch.allclose(continued["_fc.weight"], start["_fc.weight"], atol=1e-3)
    fresh = build_backbone("lite0", 11).state_dict()
    assert not torch.allclose(continued["_fc.weight"], fresh["_fc.weight"], atol=1e-2)
    summary = json.loads((tmp_path / "again" / "train_summary.json").read_text())
    assert summary["config"]["init_from"] == str(first)


def test_init_from_refuses_what_it_cannot_continue(tiny_food11, make_food11, tmp_path):
    first = train(TrainConfig(data=tiny_food11, out=tmp_path / "first", input_size=32, views=1, finetune_blocks=1,
                              head_epochs=1, finetune_epochs=0, batch_size=16, threads=1))
    with pytest.raises(TrainError, match="a lite0 model, but the backbone asked for is lite1"):
        train(TrainConfig(data=tiny_food11, out=tmp_path / "b", backbone="lite1", init_from=first))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    runner = CliRunner()
    for bad, message in [(garbage, "garbage.pt: not a model written by `servetune model train`"),
                         (tmp_path / "missing.pt", "missing.pt: no such trained model")]:
        result = runner.invoke(app, ["model", "train", "--data", str(tiny_food11), "--out", str(tmp_path / "c"),
                                     "--init-from", str(bad), "--threads", "1"])
        assert result.exit_code != 0
        assert message in result.output and "Traceback" not in result.output


def test_a_time_limit_keeps_the_heads_first_epoch_and_skips_what_does_not_fit(tiny_food11, tmp_path):
    config = TrainConfig(data=tiny_food11, out=tmp_path, input_size=32, views=1, finetune_blocks=1, head_epochs=5,
                         finetune_epochs=3, patience=5, batch_size=16, threads=1, time_limit_s=0.0)
    path = train(config)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert path.is_file() and summary["stopped_by_time_limit"] is True
    assert [len(stage["history"]) for stage in summary["stages"]] == [1]  # one head epoch, no fine-tuning
    assert summary["validation_accuracy"] == summary["stages"][0]["best_accuracy"] >= 0
    # resumed, the time the first run spent counts: nothing more is trained
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["elapsed_s"] > 0
    train(TrainConfig(**{**config.__dict__, "resume": True, "time_limit_s": 0.001}))
    again = json.loads((tmp_path / "train_summary.json").read_text())
    assert again["stages"] == summary["stages"]


def test_distillation_blends_the_teachers_softened_predictions_into_the_loss(tmp_path):
    from servetune.model.train import SoftTargets, training_loss

    labels = torch.tensor([0, 2])
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.5]], requires_grad=True)
    plain = nn.functional.cross_entropy(logits, labels)
    config = TrainConfig(data=tmp_path, out=tmp_path, label_smoothing=0.0, distill_weight=1.0, distill_temperature=1.0)
    one_hot = torch.log(nn.functional.one_hot(labels, 3).float().clamp(min=1e-7))
    loss = training_loss(config, None, "cpu")
    # a teacher sure of the labels, unsoftened, teaches what the labels do
    torch.testing.assert_close(loss(logits, labels, one_hot), plain, atol=1e-4, rtol=1e-4)
    assert loss(logits, labels, None) == plain  # no teacher: the labels only
    unsure = torch.log(torch.tensor([[0.2, 0.6, 0.2], [0.2, 0.6, 0.2]]))
    (gradient,) = torch.autograd.grad(loss(logits, labels, unsure), logits)
    assert (gradient[:, 1] < 0).all()  # pulled towards the teacher's favourite, class 1
    half = training_loss(TrainConfig(data=tmp_path, out=tmp_path, label_smoothing=0.0, distill_weight=0.5,
                                     distill_temperature=1.0), None, "cpu")
    torch.testing.assert_close(half(logits, labels, unsure), 0.5 * plain + 0.5 * loss(logits, labels, unsure))

    saved = SoftTargets.from_probabilities([tmp_path / "a.jpg"], np.array([[0.1, 0.7, 0.2]])).save(tmp_path / "t.npz")
    targets = SoftTargets.load(saved).for_images([tmp_path / "." / "a.jpg", tmp_path / "b.jpg"], [0, 2])
    torch.testing.assert_close(targets[0].exp(), torch.tensor([0.1, 0.7, 0.2]))
    assert targets[1].argmax() == 2 and targets[1].exp()[2] == 1.0  # a photo the teacher did not see: its label
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(TrainError, match="bad.npz: not a file of soft targets"):
        SoftTargets.load(tmp_path / "bad.npz")
