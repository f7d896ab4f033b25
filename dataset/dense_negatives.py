"""The dense CRD negative draw, compiled with numba.

Used when k is a large share of the train set (CIFAR: k=16384 of 50,000). For each row: keep
every negative with probability t/256 (one random byte each), redraw in the rare case that fewer
than k were kept, then drop a uniform random surplus by a partial Fisher-Yates over the kept list.
Given how many were kept, the kept set is a uniform subset of that size, so the k left are a
uniform k-subset of the negatives: the distribution of the published
np.random.choice(replace=False).

In numpy this needs a dozen array passes per row; compiled, it is one pass that costs about a
nanosecond per sample of the set. The random words continue the caller's numpy SFC64 stream, so
seeding stays with dataset.contrast.
"""
import numba
import numpy as np

_MASK32 = np.uint64(0xFFFFFFFF)


@numba.njit(inline='always')
def sfc64_next(state):
    """One output of numpy's SFC64 bit generator; state is its (a, b, c, counter) as uint64."""
    a, b, c, counter = state[0], state[1], state[2], state[3]
    out = a + b + counter
    state[0] = b ^ (b >> np.uint64(11))
    state[1] = c + (c << np.uint64(3))
    state[2] = ((c << np.uint64(24)) | (c >> np.uint64(40))) + out
    state[3] = counter + np.uint64(1)
    return out


@numba.njit(inline='always')
def below(state, bound):
    """Uniform integer in [0, bound), bound < 2**32, exactly (Lemire's multiply-and-reject)."""
    bound = np.uint64(bound)
    product = (sfc64_next(state) >> np.uint64(32)) * bound
    if (product & _MASK32) < bound:
        threshold = (np.uint64(1 << 32) - bound) % bound
        while (product & _MASK32) < threshold:
            product = (sfc64_next(state) >> np.uint64(32)) * bound
    return np.int64(product >> np.uint64(32))


@numba.njit(inline='always')
def _keep_range(state, threshold, start, stop, kept, n_kept):
    """Appends each position of [start, stop) to kept with probability threshold/256."""
    position = start
    while position + 8 <= stop:
        word = sfc64_next(state)
        for byte in range(8):  # branchless: one random byte per position
            kept[n_kept] = position + byte
            n_kept += ((word >> np.uint64(8 * byte)) & np.uint64(255)) < threshold
        position += 8
    if position < stop:
        word = sfc64_next(state)
    for byte in range(stop - position):
        kept[n_kept] = position + byte
        n_kept += ((word >> np.uint64(8 * byte)) & np.uint64(255)) < threshold
    return n_kept


@numba.njit(cache=True, nogil=True)
def draw_dense(out, rows, classes, class_starts, class_counts, thresholds, k, state, kept):
    """out[row, 1:k+1] = k distinct positions outside class classes[i]'s block of the
    class-sorted order, for each (row, class) of (rows, classes). kept is scratch of length n."""
    n = kept.shape[0]
    for i in range(rows.shape[0]):
        c = classes[i]
        block_start, block_stop = class_starts[c], class_starts[c] + class_counts[c]
        threshold = np.uint64(thresholds[c])
        n_kept = 0
        while n_kept < k:  # below k: 4 standard deviations under the mean, 3e-5 per draw
            n_kept = _keep_range(state, threshold, 0, block_start, kept, 0)
            n_kept = _keep_range(state, threshold, block_stop, n, kept, n_kept)
        for j in range(n_kept - 1, k - 1, -1):  # moves a uniform random surplus past k
            other = below(state, j + 1)
            kept[j], kept[other] = kept[other], kept[j]
        row = rows[i]
        for j in range(k):
            out[row, j + 1] = kept[j]
