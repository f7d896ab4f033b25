"""Time CRD's negative sampling: ours against the published per-sample np.random.choice.

Both draw, for each anchor of a batch, k distinct negatives from the other classes of a generated
50,000-image / 100-class train set (CIFAR-100's shape). Prints ms per batch; --json writes them.

    python scripts/bench_sampler.py [--k 16384] [--batch 64] [--json out.json]
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dataset.contrast import ContrastSampler  # noqa: E402


class PublishedSampler:
    """RepDistiller's CIFAR100InstanceSample draw: a full permutation per sample, then stacked
    by the default collate."""

    def __init__(self, targets, k):
        self.k = k
        self.cls_negative = [np.flatnonzero(targets != c) for c in range(targets.max() + 1)]

    def sample(self, index, target):
        rows = []
        for i, c in zip(index, target):
            negatives = self.cls_negative[c]
            neg = np.random.choice(negatives, self.k, replace=self.k > len(negatives))
            rows.append(np.hstack((np.asarray([i]), neg)))
        return np.stack(rows)


def time_per_batch(sampler, targets, batch, batches, rng):
    times = []
    for _ in range(batches):
        index = rng.integers(0, len(targets), batch)
        start = time.perf_counter()
        sampler.sample(index, targets[index])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--n_data', type=int, default=50000)
    parser.add_argument('--classes', type=int, default=100)
    parser.add_argument('--k', type=int, default=16384)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--batches', type=int, default=10, help='timed batches per sampler')
    parser.add_argument('--json', help='also write the figures to this file')
    opt = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    # Stored class-sorted, as our datasets store their train sets.
    targets = np.sort(rng.integers(0, opt.classes, opt.n_data))
    ours = ContrastSampler(targets, opt.k, seed=0)
    published = PublishedSampler(targets, opt.k)
    np.random.seed(0)
    time_per_batch(ours, targets, opt.batch, 2, rng)  # warm-up
    # Interleave the two so that load from other processes hits both alike.
    ours_ms, published_ms = [], []
    for _ in range(3):
        ours_ms.append(time_per_batch(ours, targets, opt.batch, opt.batches, rng))
        published_ms.append(time_per_batch(published, targets, opt.batch,
                                           max(1, opt.batches // 3), rng))
    result = dict(n_data=opt.n_data, classes=opt.classes, k=opt.k, batch=opt.batch,
                  ours_ms_per_batch=round(min(ours_ms), 2),
                  published_ms_per_batch=round(min(published_ms), 2),
                  cpu=platform.processor() or platform.machine(), cpus=os.cpu_count())
    result['speedup'] = round(result['published_ms_per_batch'] / result['ours_ms_per_batch'], 1)
    print(f"negatives for a batch of {opt.batch}, k={opt.k}, {opt.n_data} images / "
          f"{opt.classes} classes:")
    print(f"  published per-sample np.random.choice: {result['published_ms_per_batch']:8.2f} ms")
    print(f"  ours (dataset.contrast.ContrastSampler): {result['ours_ms_per_batch']:6.2f} ms")
    print(f"  speedup: {result['speedup']}x")
    if opt.json:
        with open(opt.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
