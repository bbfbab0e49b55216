"""Charts as inline SVG, drawn on the server: no JavaScript library, no CDN.

Each function returns markup safe to put in a template; every text in it is escaped.
"""
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2f6fba", "#e07b24", "#3a9a5b", "#c0392b", "#7d5ba6", "#8c8c8c")


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def column_chart(labels: list[str], series: list[tuple[str, list[float]]], *, title: str, height: int = 220) -> SafeString:
    """Grouped vertical bars: one group per label, one bar per series (e.g. opens and clicks per hour)."""
    width = max(360, 24 + len(labels) * (8 + 10 * len(series)))
    plot_top, plot_bottom, left = 24, height - 36, 44
    peak = max((value for _, values in series for value in values), default=0) or 1
    group_width = (width - left - 8) / max(len(labels), 1)
    bar_width = max(2.0, (group_width - 4) / max(len(series), 1))
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{plot_bottom}" x2="{width - 4}" y2="{plot_bottom}" stroke="#999"/>',
        f'<text x="{left - 6}" y="{plot_top + 4}" text-anchor="end" font-size="10">{_number(peak)}</text>',
        f'<text x="{left - 6}" y="{plot_bottom}" text-anchor="end" font-size="10">0</text>',
    ]
    label_every = max(1, len(labels) // 12)
    for index, label in enumerate(labels):
        x0 = left + index * group_width + 2
        for series_index, (name, values) in enumerate(series):
            value = values[index]
            bar_height = (plot_bottom - plot_top) * value / peak
            parts.append(
                f'<rect x="{x0 + series_index * bar_width:.1f}" y="{plot_bottom - bar_height:.1f}" '
                f'width="{bar_width - 1:.1f}" height="{bar_height:.1f}" fill="{PALETTE[series_index % len(PALETTE)]}">'
                f"<title>{escape(label)}: {escape(name)} {_number(value)}</title></rect>"
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x0:.1f}" y="{plot_bottom + 14}" font-size="10">{escape(label)}</text>'
            )
    for series_index, (name, _values) in enumerate(series):
        x = left + series_index * 110
        parts.append(
            f'<rect x="{x}" y="4" width="10" height="10" fill="{PALETTE[series_index % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="13" font-size="11">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def bar_list(rows: list[tuple[str, float]], *, title: str, width: int = 420) -> SafeString:
    """Horizontal bars with their names and values (breakdowns, shares)."""
    row_height, label_width = 22, 150
    height = max(row_height, row_height * len(rows)) + 4
    peak = max((value for _, value in rows), default=0) or 1
    parts = [
        f'<svg class="chart bars" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for index, (name, value) in enumerate(rows):
        y = 2 + index * row_height
        bar = (width - label_width - 60) * value / peak
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" font-size="11">{escape(str(name)[:28])}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{bar:.1f}" height="{row_height - 6}" fill="{PALETTE[0]}"/>'
            f'<text x="{label_width + bar + 4:.1f}" y="{y + 15}" font-size="11">{_number(value)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))
