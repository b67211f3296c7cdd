"""Point labels that do not overlap: a small greedy placer shared by the report plots (torch-free, matplotlib only).

Each label starts just right of (or left of, near the right edge) its point and is pushed up or down in steps until
its box touches no label placed before it, no other point, not the legend, and stays inside the axes. It is not a general solver, but
a handful of labels (a comparison, a pruning run, a latency benchmark) always find a free place.
"""

from __future__ import annotations

from typing import Sequence


def _overlaps(a, b, pad: float = 2.0) -> bool:
    return not (a.x1 + pad < b.x0 or b.x1 + pad < a.x0 or a.y1 + pad < b.y0 or b.y1 + pad < a.y0)


def place_labels(ax, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], fontsize: float = 8,
                 step_pt: float = 6.0, max_steps: int = 40, avoid: Sequence[tuple[float, float]] = ()) -> list:
    """Annotate point ``i`` at (xs[i], ys[i]) with texts[i] so that no two labels overlap; returns the annotations.

    ``avoid``: more (x, y) markers, unlabelled, that no label may cover.

    Call it after the axes limits are final (labels are placed in display space). A label that cannot be placed
    without overlap within ``max_steps`` offsets keeps its least-overlapping place; one moved away from its point
    gets a thin leader line.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    to_px = fig.dpi / 72.0
    point_boxes = []
    for x, y in [*zip(xs, ys), *avoid]:
        px, py = ax.transData.transform((x, y))
        r = 6 * to_px  # a marker of ~12 pt
        point_boxes.append(Bbox.from_extents(px - r, py - r, px + r, py + r))
    legend = ax.get_legend()
    placed, notes = ([legend.get_window_extent(renderer)] if legend else []), []  # labels stay off the legend too
    # place from top to bottom so neighbours move apart in a consistent direction
    order = sorted(range(len(texts)), key=lambda i: -ys[i])
    for i in order:
        px, _ = ax.transData.transform((xs[i], ys[i]))
        right = px < axes_box.x0 + 0.7 * axes_box.width
        dx = 9 if right else -9
        best, best_cost = None, None
        for k in range(max_steps):
            dy = 3 + (k + 1) // 2 * step_pt * (1 if k % 2 else -1) if k else 3
            note = ax.annotate(texts[i], (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize,
                               ha="left" if right else "right", va="center")
            box = note.get_window_extent(renderer)
            others = [p for j, p in enumerate(point_boxes) if j != i]
            cost = sum(_overlaps(box, b) for b in placed + others)
            cost += 0 if (box.y0 >= axes_box.y0 and box.y1 <= axes_box.y1) else 1
            if best_cost is None or cost < best_cost:
                if best is not None:
                    best.remove()
                best, best_cost, best_box = note, cost, box
            else:
                note.remove()
            if cost == 0:
                break
        if abs(best.xyann[1]) > 2 * step_pt:  # moved away from its point: a thin leader line shows which is which
            offset = best.xyann
            best.remove()
            best = ax.annotate(texts[i], (xs[i], ys[i]), textcoords="offset points", xytext=offset, fontsize=fontsize,
                               ha="left" if right else "right", va="center",
                               arrowprops=dict(arrowstyle="-", lw=0.5, color="0.5", shrinkA=0, shrinkB=3))
        placed.append(best_box)
        notes.append(best)
    return notes


def labels_overlap(notes: Sequence) -> bool:
    """True when the texts of any two ``notes`` (annotations already drawn) overlap on the canvas: for tests."""
    from matplotlib.text import Text

    renderer = notes[0].figure.canvas.get_renderer()
    boxes = [Text.get_window_extent(n, renderer) for n in notes]  # the text only, not a leader line
    return any(_overlaps(a, b, pad=0.0) for i, a in enumerate(boxes) for b in boxes[i + 1:])
