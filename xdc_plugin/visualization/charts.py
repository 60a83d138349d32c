"""Cluster quality per round as an inline SVG chart (matplotlib)."""
import io

from matplotlib import rc_context
from matplotlib.figure import Figure

PANELS = (('nmi', 'NMI vs labels'), ('ari', 'ARI vs labels'),
          ('purity', 'purity vs labels'),
          ('xmodal_nmi', 'video-audio agreement (NMI)'))
SOURCE_STYLES = dict(video=('tab:blue', 'o'), audio=('tab:orange', 's'),
                     joint=('tab:green', '^'))


def _series(rounds, metric):
    """``{name: [(x, value)]}`` of ``metric`` over the rounds: one series
    per source, or a single one for the cross-modal agreement."""
    series = {}
    for x, round_ in enumerate(rounds):
        if metric == 'xmodal_nmi':
            if metric in round_.agreement:
                series.setdefault('video-audio', []).append(
                    (x, round_.agreement[metric]))
            continue
        for source, values in round_.metrics.items():
            if metric in values:
                series.setdefault(source, []).append((x, values[metric]))
    return series


def quality_chart_svg(rounds):
    """An ``<svg>`` element charting each metric the rounds carry, one panel
    per metric, rounds on the x axis; None when no round carries any
    metric."""
    panels = [(title, _series(rounds, metric)) for metric, title in PANELS]
    panels = [(title, series) for title, series in panels if series]
    if not panels:
        return None
    fig = Figure(figsize=(2.6 * len(panels), 2.3))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    ticks = [str(r.round_id) for r in rounds]
    for ax, (title, series) in zip(axes, panels):
        for name, points in series.items():
            colour, marker = SOURCE_STYLES.get(name, ('tab:purple', 'D'))
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker=marker, color=colour, label=name,
                    markersize=4, linewidth=1.5)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(rounds)), ticks, fontsize=7)
        ax.set_xlabel('round', fontsize=8)
        ax.tick_params(axis='y', labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    # Fixed margins: tight_layout costs more than the rest of the chart.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.2, top=0.88,
                        wspace=0.3)
    buffer = io.StringIO()
    # Text as <text> elements (the page's font), not as glyph paths.
    with rc_context({'svg.fonttype': 'none'}):
        fig.savefig(buffer, format='svg')
    svg = buffer.getvalue()
    return svg[svg.index('<svg'):]  # drop the XML prolog and doctype
