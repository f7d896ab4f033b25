"""Draw fig/illustrative-example.png: EMKD at a glance.

Left: teacher (resnet110, 18/18/18 blocks) and student (myresnet20) stages side by side, with
milestone checks (dashed) between corresponding stage outputs, each weighted by the capacity
weight w_i = 3 / block_depth_i. Right: the student's block composition as BCS changes it.

    python fig/draw_illustrative_example.py [--out PATH]
"""
import argparse
import os
from fractions import Fraction

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = (3, 3, 3)             # myresnet20's own composition
TEACHER = (18, 18, 18)       # resnet110
WIDTHS = (16, 32, 64)        # channels per stage
STUDENT = (3, 7, 2)          # the composition shown in detail
BCS_STEPS = [(3, 3, 3), (3, 7, 2)]
STAGE_COLORS = ('#8fb8de', '#9fd19b', '#f4b183')
STAGE_EDGES = ('#2b6ca3', '#3c8d38', '#c0602a')


def cifar_resnet_params(depth, num_classes=100):
    """Parameters of a CIFAR ResNet with basic blocks (stem 16 ch, stages 16/32/64)."""
    total = 3 * 16 * 9 + 2 * 16                          # stem conv + BN
    c_in = 16
    for blocks, c in zip(depth, WIDTHS):
        for b in range(blocks):
            total += c_in * c * 9 + c * c * 9 + 4 * c     # two 3x3 convs + two BNs
            if c_in != c:
                total += c_in * c + 2 * c                 # 1x1 projection shortcut + BN
            c_in = c
    return total + 64 * num_classes + num_classes


def weight_text(depth):
    """'3/7' style capacity weights; whole numbers plain."""
    out = []
    for base, d in zip(BASE, depth):
        w = Fraction(base, d)
        out.append(str(w.numerator) if w.denominator == 1 else f'{w.numerator}/{w.denominator}')
    return out


def box(ax, x, y, w, h, text, face='#eeeeee', edge='#555555', size=10, weight='normal'):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle='round,pad=0.02,rounding_size=0.6',
                                facecolor=face, edgecolor=edge, linewidth=1.2))
    ax.text(x + w / 2, y + h / 2, text, ha='center', va='center', fontsize=size, weight=weight)


def arrow(ax, start, end, style='-|>', color='#444444', lw=1.3, dashed=False, rad=0.0):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color,
                                 linewidth=lw, linestyle=(0, (5, 3)) if dashed else '-',
                                 connectionstyle=f'arc3,rad={rad}'))


def stage(ax, x, y, w, h, blocks, i, label):
    """A stage: a framed box with one thin bar per residual block, label underneath."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle='round,pad=0.02,rounding_size=0.6',
                                facecolor='white', edgecolor=STAGE_EDGES[i], linewidth=1.6))
    bar, gap = 1.3, 0.45  # same block width in every network: depth is what differs
    left = x + (w - blocks * bar - (blocks - 1) * gap) / 2
    for b in range(blocks):
        ax.add_patch(Rectangle((left + b * (bar + gap), y + 0.9), bar, h - 3.2,
                               facecolor=STAGE_COLORS[i], edgecolor=STAGE_EDGES[i], linewidth=0.6))
    ax.text(x + w / 2, y + h - 1.15, label, ha='center', va='center', fontsize=9.5)


def column(ax, x, w, title, subtitle, depth, tops, h_stage):
    """Stem, the three stages, pool+FC and logits of one network, top to bottom."""
    ax.text(x + w / 2, 96.5, title, ha='center', va='center', fontsize=13, weight='bold')
    ax.text(x + w / 2, 93.3, subtitle, ha='center', va='center', fontsize=9.5, color='#444444')
    box(ax, x + w * 0.2, 86, w * 0.6, 4, 'conv 3×3, 16 ch')
    arrow(ax, (x + w / 2, 86), (x + w / 2, tops[0] + h_stage))
    for i, (blocks, top) in enumerate(zip(depth, tops)):
        stage(ax, x, top, w, h_stage, blocks, i,
              f'stage {i + 1}: {blocks} blocks × {WIDTHS[i]} ch')
        nxt = tops[i + 1] + h_stage if i + 1 < len(tops) else 14
        arrow(ax, (x + w / 2, top), (x + w / 2, nxt))
    box(ax, x + w * 0.2, 10, w * 0.6, 4, 'pool + FC → logits')


def draw_distillation(ax):
    """Left: teacher and student side by side, milestone checks between stage outputs."""
    h_stage, tops = 12, [66, 46, 26]
    tx, sx, w = 4, 58, 34
    column(ax, tx, w, 'Teacher: resnet110', f'blocks (18, 18, 18), '
           f'{cifar_resnet_params(TEACHER) / 1e6:.2f}M params, frozen', TEACHER, tops, h_stage)
    column(ax, sx, w, 'Student: myresnet20',
           f'blocks {STUDENT} found by BCS, {cifar_resnet_params(STUDENT) / 1e6:.2f}M params',
           STUDENT, tops, h_stage)
    weights = weight_text(STUDENT)
    for i, top in enumerate(tops):
        y = top + 1.2  # the stage output sits at the bottom edge
        arrow(ax, (tx + w + 0.6, y), (sx - 0.6, y), dashed=True, color='#b03060', lw=1.6)
        ax.text((tx + w + sx) / 2, y + 1.6, f'milestone check {i + 1}',
                ha='center', va='bottom', fontsize=9, color='#b03060')
        value = f'3/{STUDENT[i]}' + ('' if '/' in weights[i] else f' = {weights[i]}')
        ax.text((tx + w + sx) / 2, y - 1.4, rf'$w_{i + 1} = {value}$',
                ha='center', va='top', fontsize=11, color='#b03060')
    arrow(ax, (tx + w * 0.8 + 0.6, 12), (sx + w * 0.2 - 0.6, 12), color='#1f4e79', lw=1.6)
    ax.text((tx + w + sx) / 2, 13.6, 'KD / CRD on logits & embeddings', ha='center',
            va='bottom', fontsize=9, color='#1f4e79')
    ax.text(50, 4.2, r'$\mathcal{L} = \mathcal{L}_{CE} + \alpha\,\mathcal{L}_{KD} + '
            r'\beta\,\mathcal{L}_{method} + \lambda_{MC}\sum_i w_i\,\mathrm{KL}_T(t_i\,\|\,s_i)$'
            r',   $w_i = 3\,/\,d_i$  ($d_i$: student blocks in stage $i$)',
            ha='center', va='center', fontsize=12)


def draw_search(ax):
    """Right: the student's block composition under BCS, step by step."""
    rx, rw = 104, 42
    ax.add_patch(FancyBboxPatch((rx - 2, 8), rw + 4, 84, boxstyle='round,pad=0.3,rounding_size=1.5',
                                facecolor='#fafafa', edgecolor='#999999', linewidth=1))
    ax.text(rx + rw / 2, 88.5, 'Block composition search (BCS)', ha='center', fontsize=13,
            weight='bold')
    ax.text(rx + rw / 2, 85, 'the search trains students of other block compositions\n'
            'and keeps the one that distils best', ha='center', va='top',
            fontsize=9, color='#444444')
    rows = BCS_STEPS + [None]
    ys = [68, 46, 24]
    for step, (depth, y) in enumerate(zip(rows, ys)):
        if depth is None:
            ax.text(rx + rw / 2, y + 5, '…', ha='center', va='center', fontsize=26, color='#777777')
            ax.text(rx + rw / 2, y + 0.5, 'further candidates',
                    ha='center', fontsize=9, color='#777777')
            break
        chosen = depth == STUDENT
        if chosen:
            ax.add_patch(FancyBboxPatch((rx - 0.5, y - 3.6), rw + 1, 16.6,
                                        boxstyle='round,pad=0.2,rounding_size=1',
                                        facecolor='none', edgecolor='#b03060', linewidth=1.8))
        ax.text(rx, y + 11, f'step {step}: blocks {depth}', fontsize=10.5, weight='bold')
        size, gap, x = 1.85, 0.45, rx
        for i, blocks in enumerate(depth):  # one square per block, grouped by stage
            for b in range(blocks):
                ax.add_patch(Rectangle((x, y + 3.4), size, size * 1.6, facecolor=STAGE_COLORS[i],
                                       edgecolor=STAGE_EDGES[i], linewidth=0.8))
                x += size + gap
            x += 2.2
        w_text = ', '.join(weight_text(depth))
        ax.text(rx, y + 0.8, f'w = ({w_text}),  {cifar_resnet_params(depth) / 1e6:.3f}M params',
                fontsize=9.5, va='center')
        if chosen:
            ax.text(rx + rw, y - 2.3, 'shown on the left', ha='right', fontsize=8.5,
                    color='#b03060', style='italic')
        if step + 1 < len(rows):
            arrow(ax, (rx + rw / 2, y - 3.9), (rx + rw / 2, ys[step + 1] + 13.2), lw=1.5)
    legend_x = rx
    for i in range(3):
        ax.add_patch(Rectangle((legend_x, 11.3), 1.8, 2.4, facecolor=STAGE_COLORS[i],
                               edgecolor=STAGE_EDGES[i]))
        ax.text(legend_x + 2.4, 12.5, f'stage {i + 1} block', fontsize=8.5, va='center')
        legend_x += 13.5


def draw(out):
    fig = plt.figure(figsize=(15, 8.6))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 150)
    ax.set_ylim(0, 100)
    ax.axis('off')
    draw_distillation(ax)
    draw_search(ax)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=os.path.join(HERE, 'illustrative-example.png'))
    args = parser.parse_args(argv)
    print(draw(args.out))


if __name__ == '__main__':
    main()
