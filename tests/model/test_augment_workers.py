"""Augmented batches from worker processes equal the in-process ones, batch for batch, in order."""

from __future__ import annotations

import signal
import threading

import numpy as np
import torch
from PIL import Image

from servetune.model.augment import Augmentation
from servetune.model.augment_workers import BatchAugmenter
from servetune.model.train import TrainConfig, model_spec, train
from servetune.stop_signals import sigterm_as_interrupt


def photos(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (40 + i, 64, 3), dtype=np.uint8)) for i in range(count)]


def test_workers_give_the_same_batches_as_one_process_in_the_same_order(tmp_path):
    spec = model_spec(TrainConfig(data=tmp_path, out=tmp_path, input_size=32))
    images = photos(12)
    index_batches = [[0, 5, 3], [11, 2], [7, 7, 1, 4], [9]]
    seeds = [11, 12, 13, 14]
    with BatchAugmenter(images, spec, Augmentation(), workers=0) as serial:
        expected = list(serial.batches(index_batches, seeds))
    with BatchAugmenter(images, spec, Augmentation(), workers=3) as pooled:
        got = list(pooled.batches(index_batches, seeds))
        pool = pooled.pool
    assert [batch.shape for batch in got] == [(3, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32), (1, 3, 32, 32)]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(got[2][0], got[2][1])  # the same photo twice in a batch: two different views
    assert pooled.pool is None and pool._state != "RUN"  # closed on leaving the block


def test_training_with_augment_workers_ends_in_the_same_weights(tiny_food11, tmp_path):
    def trained(workers: int) -> dict:
        config = TrainConfig(data=tiny_food11, out=tmp_path / str(workers), input_size=32, views=1,
                             augment_every_epoch=True, finetune_blocks=2, head_epochs=1, finetune_epochs=2,
                             patience=5, batch_size=8, threads=1, augment_workers=workers)
        return torch.load(train(config), weights_only=False)["state_dict"]

    serial, pooled = trained(0), trained(2)
    assert all(torch.equal(serial[name], pooled[name]) for name in serial)
    assert not torch.equal(serial["_fc.weight"], torch.zeros_like(serial["_fc.weight"]))


def test_closing_the_pool_ends_its_workers_whatever_signal_handlers_the_parent_has(tmp_path):
    # The parent's SIGTERM-as-Ctrl-C handler and a SIGINT handler that only sets a flag (the load driver's
    # "finish this run first") are inherited by forked workers; a worker waiting for a job then survives the
    # SIGTERM that terminates the pool, and close() waits for it forever.
    spec = model_spec(TrainConfig(data=tmp_path, out=tmp_path, input_size=32))
    stops = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stops.append(signum))
    previous_term = signal.getsignal(signal.SIGTERM)
    sigterm_as_interrupt()
    try:
        # Whether a worker is left waiting depends on who takes the pool's queue first: try a few times.
        for _ in range(8):
            augmenter = BatchAugmenter(photos(4), spec, Augmentation(), workers=4)
            assert len(list(augmenter.batches([[0], [1]], [1, 2]))) == 2
            closing = threading.Thread(target=augmenter.close, daemon=True)
            closing.start()
            closing.join(timeout=30)
            assert not closing.is_alive(), "the pool's workers did not end on terminate"
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
    assert stops == []  # the workers' SIGTERM never reached the parent's handlers
