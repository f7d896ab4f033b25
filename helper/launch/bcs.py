"""Block composition search (BCS, CRD-EMKD): spread a student's blocks over its stages.

The rule, generalised from the published 3-stage CIFAR ResNet case without changing it:
- Start from the student's base composition, e.g. (3, 3, 3) for myresnet20.
- Phase 1 moves blocks from the last stage to the one before it, phase 2 from that stage to the
  one before it, and so on down to stage 1 (3 stages: 2 phases; 4 stages: 3 phases).
- One move takes 1 block from the source stage and gives `rate` blocks to the destination,
  where rate = params(one source block) / params(one destination block), rounded: a block of a
  stage with twice the width costs 4x the parameters, so CIFAR ResNets trade 1 for 4 and the
  parameter count stays about the same.
- A phase visits the moves 1, 2, ... from its starting point while the source keeps >= 1 block
  and the destination stays within the teacher's depth of that stage; the next phase starts
  from the best composition seen so far.
For resnet110 -> myresnet20: phase 1 visits (3,3,3), (3,7,2), (3,11,1); if (3,7,2) wins, phase 2
visits (7,6,2), (11,5,2), (15,4,2).
"""
import models


def _params(name, block_depth, num_classes):
    model = models.build_model(name, num_classes=num_classes, block_depth=list(block_depth))
    return sum(p.numel() for p in model.parameters())


def exchange_rates(name, num_classes=100):
    """rates[i]: how many stage-i blocks one stage-(i+1) block buys (same parameter count)."""
    base = models.base_depth(name)
    ref = _params(name, base, num_classes)
    block = []
    for i in range(len(base)):
        bigger = list(base)
        bigger[i] += 1
        block.append(_params(name, bigger, num_classes) - ref)
    return [max(1, round(block[i + 1] / block[i])) for i in range(len(base) - 1)]


def teacher_limits(model_t, n_stages, depth=None):
    """The teacher's blocks per stage (depth, else its base) bound the student's; unbounded for
    teachers without stages."""
    if depth is None:
        depth = models.base_depth(model_t) if model_t in models.model_dict else None
    if depth is None or len(depth) != n_stages:
        return [float('inf')] * n_stages
    return list(depth)


def phase_moves(start, src, dst, rate, limits):
    """Compositions reached by 1, 2, ... moves of src -> dst from start, within the bounds."""
    out = []
    current = list(start)
    while current[src] - 1 >= 1 and current[dst] + rate <= limits[dst]:
        current = list(current)
        current[src] -= 1
        current[dst] += rate
        out.append(tuple(current))
    return out


def search(start, rates, limits, score_phase):
    """Run BCS. score_phase(compositions, phase) -> accuracies, so a phase's candidates may train
    in parallel. Returns (visited [(composition, phase, accuracy)], best composition)."""
    best = tuple(start)
    visited = []
    n = len(best)
    if n == 1:
        return [(best, 1, score_phase([best], 1)[0])], best
    for phase, src in enumerate(range(n - 1, 0, -1), start=1):
        seen = {v[0] for v in visited}
        comps = [c for c in phase_moves(best, src, src - 1, rates[src - 1], limits) if c not in seen]
        if phase == 1:  # the start is phase 1's first candidate: the whole phase trains at once
            comps = [best] + comps
        visited += [(c, phase, acc) for c, acc in zip(comps, score_phase(comps, phase))]
        best = max(visited, key=lambda v: v[2])[0]  # ties keep the earlier composition
    return visited, best


def phase_plan(start, rates, limits):
    """[(phase, source stage index or None, compositions)] the search visits if the start stays
    best: phase 1 holds the start itself and its moves."""
    n = len(start)
    if n == 1:
        return [(1, None, [tuple(start)])]
    return [(phase, src, ([tuple(start)] if phase == 1 else [])
             + phase_moves(start, src, src - 1, rates[src - 1], limits))
            for phase, src in enumerate(range(n - 1, 0, -1), start=1)]


def planned_count(start, rates, limits):
    """Candidates the search will train if the start composition stays best (progress estimate)."""
    n = len(start)
    total = 1
    for src in range(n - 1, 0, -1):
        total += len(phase_moves(start, src, src - 1, rates[src - 1], limits))
    return total


def why_no_moves(start, rates, limits):
    """Why no phase can move a block from start (planned_count 1), one reason per phase."""
    reasons = []
    for src in range(len(start) - 1, 0, -1):
        dst, rate = src - 1, rates[src - 1]
        if start[src] - 1 < 1:
            reasons.append(f'stage {src + 1} has 1 block, none to give')
        elif start[dst] + rate > limits[dst]:
            reasons.append(f'{rate} more in stage {dst + 1} would pass the teacher\'s {limits[dst]:g} there')
    return '; '.join(reasons) or 'a single stage'


def winner_scores(winner, final, search_epochs, epochs, keys=('best_acc', 'last_acc')):
    """A winner's accuracy, as every report of it words it: with a retrain (final), the retrained
    figures first, labelled, beside the search score; without, the search's own (full) runs."""
    score = ' '.join(f'{k} {winner[k]:.2f}' for k in keys)
    if final is None:
        return score
    retrained = ' '.join(f'{k} {final[k]:.2f}' for k in keys)
    return (f'retrained{_on_epochs(epochs)}: {retrained}; search score{_on_epochs(search_epochs)}: {score}')


def _on_epochs(n):
    return '' if n is None else f' on {n} epoch{"s" if n != 1 else ""}'

