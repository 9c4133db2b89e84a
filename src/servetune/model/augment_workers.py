"""Augmented batches made by worker processes.

On a GPU the network is fast and the one Python thread that augments photos with PIL becomes the limit
(about 1 ms per photo: 30 s per epoch of 30,000 photos). Each batch gets its own seed, drawn from the
training's generator, so a batch is the same whatever the number of workers (0 augments in this process).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from typing import Self

import numpy as np

from servetune.config import ModelSpec
from servetune.model.augment import Augmentation, augment
from servetune.stop_signals import leave_signals_to_the_parent

# What forked workers read: set before the pool starts, inherited by fork, never sent through a pipe.
_shared: tuple[Sequence, ModelSpec, Augmentation] | None = None


def augment_batch(images: Sequence, indices: Sequence[int], seed: int, spec: ModelSpec,
                  augmentation: Augmentation) -> np.ndarray:
    """(len(indices), 3, H, W) float32: one augmented view of each chosen image."""
    rng = np.random.default_rng(seed)
    return np.stack([augment(images[i], spec, rng, augmentation) for i in indices])


def _augment_in_worker(job: tuple[list[int], int]) -> np.ndarray:
    images, spec, augmentation = _shared
    return augment_batch(images, job[0], job[1], spec, augmentation)


class BatchAugmenter:
    """Yields augmented batches in order; with workers > 0, a forked pool keeps a few batches ahead."""

    def __init__(self, images: Sequence, spec: ModelSpec, augmentation: Augmentation, workers: int = 0):
        self.images, self.spec, self.augmentation = images, spec, augmentation
        self.pool = None
        if workers > 0:
            global _shared
            _shared = (images, spec, augmentation)
            # fork: the workers inherit the decoded photos instead of unpickling them; they run only PIL
            # and numpy, never torch, so a parent that has started CUDA or OpenMP threads is safe to fork.
            self.pool = multiprocessing.get_context("fork").Pool(workers, initializer=leave_signals_to_the_parent)

    def batches(self, index_batches: Sequence[Sequence[int]], seeds: Sequence[int]) -> Iterator[np.ndarray]:
        jobs = [(list(map(int, indices)), int(seed)) for indices, seed in zip(index_batches, seeds, strict=True)]
        if self.pool is None:
            for indices, seed in jobs:
                yield augment_batch(self.images, indices, seed, self.spec, self.augmentation)
        else:
            yield from self.pool.imap(_augment_in_worker, jobs)

    def close(self) -> None:
        global _shared
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
        _shared = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
