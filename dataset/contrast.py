"""CRD's contrastive index sampling (RepDistiller's CIFAR100InstanceSample), one batch at a time.

A row is [positive, k negatives]. The positive is the anchor itself (mode 'exact') or a random
sample of the anchor's class ('relax'). The negatives are drawn uniformly from the samples of the
other classes: without replacement when there are at least k of them, else with replacement, as
published. percent < 1 keeps a fixed random fraction of each class's negatives (published option).

Classes may have any size (ImageNet's do not match): nothing is a ragged numpy array, and with
percent == 1 no (classes x negatives) table is built either: class c's negatives are addressed by
position in the class-sorted order with class c cut out (our train sets are stored class-sorted,
so that is integer arithmetic, not a gather).

Two exact ways to draw k distinct negatives, picked per class by cost:
- a partial Fisher-Yates over k positions (numpy's Generator.choice without shuffle; Floyd's
  method for small k), where the published np.random.choice permutes all m negatives per sample;
- when k is a large share of the set (CIFAR's k=16384 of 50,000), a keep-and-trim pass over the
  whole set, compiled with numba (dataset/dense_negatives.py): about a nanosecond per sample of
  the set instead of a random swap per negative.
"""
import os

import numpy as np
import torch
from torch.utils.data import get_worker_info

from helper.errors import UsageError

MODES = ('exact', 'relax')


def check_contrast_options(k, mode, percent):
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if int(k) != k or k < 1:
        raise UsageError(f'--nce_k must be a positive integer, got {k}')
    if not 0 < percent <= 1:
        raise UsageError(f'percent must be in (0, 1], got {percent}')


class ContrastSampler:
    """Samples (batch, k + 1) int64 contrast indices on the CPU."""

    def __init__(self, targets, k, mode='exact', percent=1.0, seed=None, stream=0):
        """seed fixes the percent subset and the draws (None: torch's seed); stream (e.g. the DDP
        rank) gives another stream of draws from the same subset."""
        check_contrast_options(k, mode, percent)
        targets = np.asarray(targets, dtype=np.int64)
        self.k, self.mode, self.seed, self.stream = int(k), mode, seed, int(stream)
        self.n_data = len(targets)
        self.num_classes = int(targets.max()) + 1
        self.counts = np.bincount(targets, minlength=self.num_classes)
        self.starts = np.cumsum(self.counts) - self.counts
        self.is_sorted = bool((np.diff(targets) >= 0).all())
        self.order = None if self.is_sorted else np.argsort(targets, kind='stable')
        if len(np.unique(targets)) < 2:
            raise UsageError('contrastive sampling needs at least two classes in the train set')
        self.neg_counts = self.n_data - self.counts
        self.kept = None
        if percent < 1:
            # Drawn once, before any worker starts, so that all workers share the same subset.
            rng = np.random.default_rng(seed)
            kept = [rng.permutation(self._all_negatives(c))[:int(self.neg_counts[c] * percent)]
                    for c in range(self.num_classes)]
            self.neg_counts = np.array([len(x) for x in kept], dtype=np.int64)
            self.kept_starts = np.cumsum(self.neg_counts) - self.neg_counts
            self.kept = np.concatenate(kept)
        self._rng_key, self._rng = None, None
        self.epoch = 0
        # Per class, the byte threshold t of the dense draw (keep each sample with probability
        # t/256, 4 standard deviations above k), or 0 for the partial Fisher-Yates. On x86 the
        # dense draw costs about what a partial Fisher-Yates over n/10 positions does.
        sd = np.sqrt(self.k * np.clip(1 - self.k / np.maximum(self.neg_counts, 1), 0, 1))
        thresholds = np.ceil(256 * (self.k + 4 * sd) / np.maximum(self.neg_counts, 1))
        dense = ((self.kept is None) & (10 * self.k >= self.n_data) & (thresholds < 256)
                 & (self.n_data < 2 ** 32))  # the compiled draw's bounded integers are 32-bit
        self.thresholds = np.where(dense, thresholds, 0).astype(np.uint8)

    def compile(self):
        """Compiles the dense draw now (or loads it from numba's cache) when a class uses it, so
        that DataLoader workers forked afterwards do not each compile it at their first batch."""
        if self.thresholds.any():
            self._draw_dense(np.empty((0, self.k + 1), np.int64), np.empty(0, np.int64),
                             np.empty(0, np.int64), np.random.Generator(np.random.SFC64(0)))

    def _sorted_to_index(self, positions):
        return positions if self.order is None else self.order[positions]

    def _all_negatives(self, c):
        everyone = np.arange(self.n_data)
        cut = np.r_[everyone[:self.starts[c]], everyone[self.starts[c] + self.counts[c]:]]
        return self._sorted_to_index(cut)

    def negatives(self, c):
        """The dataset indices that class c draws its negatives from."""
        if self.kept is None:
            return self._all_negatives(c)
        return self.kept[self.kept_starts[c]:self.kept_starts[c] + self.neg_counts[c]]

    def _generator(self):
        # One stream per process: a DataLoader worker mixes in its own seed, otherwise forked
        # workers would all draw the same negatives.
        info = get_worker_info()
        key = (os.getpid(), None if info is None else info.seed, self.epoch)
        if key != self._rng_key:
            entropy = [torch.initial_seed() if self.seed is None else self.seed, self.stream, self.epoch]
            if info is not None:
                entropy.append(info.seed)
            self._rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence(entropy)))
            self._rng_key = key
        return self._rng

    def set_epoch(self, epoch):
        """A stream per epoch, so a resumed run draws the negatives an uninterrupted one would."""
        self.epoch = int(epoch)

    def _draw_dense(self, out, rows, classes, rng):
        """Fills out[rows, 1:] by the compiled keep-and-trim draw, which continues rng's SFC64
        stream."""
        from dataset.dense_negatives import draw_dense  # numba loads only when needed
        numpy_state = rng.bit_generator.state
        words = numpy_state['state']['state'].copy()  # (a, b, c, counter)
        draw_dense(out, rows, classes, self.starts, self.counts, self.thresholds, self.k, words,
                   np.empty(self.n_data, dtype=np.int64))
        numpy_state['state']['state'] = words
        rng.bit_generator.state = numpy_state
        if self.order is not None:
            out[rows, 1:] = self.order[out[rows, 1:]]

    def _sparse_negatives(self, c, rng):
        """k negatives of class c by position: a partial Fisher-Yates over k positions (Floyd's
        method for small k), or with replacement when class c has fewer than k negatives."""
        m = self.neg_counts[c]
        if self.k <= m:
            positions = rng.choice(m, self.k, replace=False, shuffle=False)
        else:
            positions = rng.integers(0, m, self.k)
        if self.kept is not None:
            return self.kept[self.kept_starts[c] + positions]
        np.add(positions, self.counts[c], out=positions, where=positions >= self.starts[c])
        return self._sorted_to_index(positions)

    def sample(self, index, target):
        index = np.asarray(index, dtype=np.int64)
        target = np.asarray(target, dtype=np.int64)
        rng = self._generator()
        out = np.empty((len(index), self.k + 1), dtype=np.int64)
        if self.mode == 'exact':
            out[:, 0] = index
        else:
            same_class = self.starts[target] + rng.integers(0, self.counts[target])
            out[:, 0] = self._sorted_to_index(same_class)
        dense = self.thresholds[target] > 0
        if dense.any():
            self._draw_dense(out, np.flatnonzero(dense), target[dense], rng)
        for row in np.flatnonzero(~dense):
            out[row, 1:] = self._sparse_negatives(target[row], rng)
        return out
