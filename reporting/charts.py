"""Charts as inline SVG, drawn on the server: no JavaScript library, no CDN.

Each function returns a `<figure>` with its title as a visible caption and the SVG; every text in it is
escaped. The SVG is drawn on a fixed canvas (`WIDTH` units wide) and scales to the width of its box
(CSS `svg.chart`), so text keeps one size relative to the chart whatever the number of bars, and no
style attribute is used (the pages' Content-Security-Policy forbids them).
"""
import math

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2f6fba", "#e07b24", "#3a9a5b", "#c0392b", "#7d5ba6", "#8c8c8c")
WIDTH = 960
AXIS_FONT_SIZE = 11
# Wider than the average glyph of a sans-serif at that size: labels are spaced as if every glyph were wide.
GLYPH_WIDTH = AXIS_FONT_SIZE * 0.62
LABEL_GAP = 10


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _figure(title: str, svg: str) -> SafeString:
    return mark_safe(f'<figure class="chart"><figcaption>{escape(title)}</figcaption>{svg}</figure>')


def label_step(labels: list[str], slot_width: float) -> int:
    """Every how many slots an axis label can be written without touching the next one."""
    widest = max((len(label) for label in labels), default=0) * GLYPH_WIDTH + LABEL_GAP
    return max(1, math.ceil(widest / slot_width)) if slot_width > 0 else 1


def column_chart(labels: list[str], series: list[tuple[str, list[float]]], *, title: str, height: int = 240) -> SafeString:
    """Grouped vertical bars: one group per label, one bar per series (e.g. opens and clicks per hour)."""
    plot_top, plot_bottom, left, right = 28, height - 24, 52, WIDTH - 8
    peak = max((value for _, values in series for value in values), default=0) or 1
    group_width = (right - left) / max(len(labels), 1)
    bar_width = max(1.0, (group_width - 2) / max(len(series), 1))
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{plot_bottom}" x2="{right}" y2="{plot_bottom}" stroke="#999"/>',
        f'<text x="{left - 6}" y="{plot_top + 4}" text-anchor="end" font-size="{AXIS_FONT_SIZE}">{_number(peak)}</text>',
        f'<text x="{left - 6}" y="{plot_bottom}" text-anchor="end" font-size="{AXIS_FONT_SIZE}">0</text>',
    ]
    step = label_step(labels, group_width)
    for index, label in enumerate(labels):
        x0 = left + index * group_width + 1
        for series_index, (name, values) in enumerate(series):
            value = values[index]
            bar_height = (plot_bottom - plot_top) * value / peak
            parts.append(
                f'<rect x="{x0 + series_index * bar_width:.1f}" y="{plot_bottom - bar_height:.1f}" '
                f'width="{max(bar_width - 1, 0.5):.1f}" height="{bar_height:.1f}" fill="{PALETTE[series_index % len(PALETTE)]}">'
                f"<title>{escape(label)}: {escape(name)} {_number(value)}</title></rect>"
            )
        if index % step == 0:
            parts.append(
                f'<text class="axis-label" x="{x0:.1f}" y="{plot_bottom + 16}" font-size="{AXIS_FONT_SIZE}">{escape(label)}</text>'
            )
    for series_index, (name, _values) in enumerate(series):
        x = left + series_index * 110
        parts.append(
            f'<rect x="{x}" y="6" width="10" height="10" fill="{PALETTE[series_index % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="15" font-size="{AXIS_FONT_SIZE + 1}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return _figure(title, "".join(parts))


def bar_list(rows: list[tuple[str, float]], *, title: str) -> SafeString:
    """Horizontal bars with their names and values (breakdowns, shares)."""
    row_height, label_width = 24, 220
    height = max(row_height, row_height * len(rows)) + 4
    peak = max((value for _, value in rows), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for index, (name, value) in enumerate(rows):
        y = 2 + index * row_height
        bar = (WIDTH - label_width - 80) * value / peak
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" font-size="13">{escape(str(name)[:32])}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{bar:.1f}" height="{row_height - 6}" fill="{PALETTE[0]}"/>'
            f'<text x="{label_width + bar + 6:.1f}" y="{y + 16}" font-size="13">{_number(value)}</text>'
        )
    parts.append("</svg>")
    return _figure(title, "".join(parts))
