"""Charts as inline SVG, drawn on the server: sparklines, bar charts and line charts with deploy markers.

Every label goes through `markupsafe.escape`; the result is `Markup`, safe to place in an autoescaped template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at position `at` (an index into the series) with a label (a deploy's release)."""

    at: float
    label: str


def _scale(values: Sequence[float], height: float, pad: float) -> list[float]:
    top = max(values) if values and max(values) > 0 else 1.0
    return [pad + (height - 2 * pad) * (1 - v / top) for v in values]


def sparkline(values: Sequence[float], *, width: int = 120, height: int = 24, label: str = "") -> Markup:
    """A small polyline of `values`, oldest first (empty series: a flat line)."""
    points = list(values) or [0.0]
    if len(points) == 1:
        points = points * 2
    ys = _scale(points, height, 2)
    step = width / (len(points) - 1)
    path = " ".join(f"{i * step:.1f},{y:.1f}" for i, y in enumerate(ys))
    return Markup(
        '<svg class="spark" role="img" aria-label="{label}" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{path}"/></svg>'
    ).format(label=label, w=width, h=height, path=path)


def line_chart(
    values: Sequence[float], *, labels: Sequence[str] = (), markers: Sequence[Marker] = (),
    shade: tuple[float, float] | None = None, width: int = 640, height: int = 160, title: str = "",
) -> Markup:  # fmt: skip
    """A line over `values` (oldest first), the first and last `labels` under it, a dashed line per marker and an
    optional shaded span `shade` = (from, to) in series positions (an onset, a window)."""
    points = list(values) or [0.0]
    if len(points) == 1:
        points = points * 2
    pad_x, pad_y = 36, 14
    inner = width - 2 * pad_x
    step = inner / (len(points) - 1)
    ys = _scale(points, height - 16, pad_y)
    parts = [
        Markup('<svg class="chart" role="img" aria-label="{t}" width="{w}" height="{h}" viewBox="0 0 {w} {h}">').format(
            t=title, w=width, h=height
        ),
        Markup('<text x="2" y="{y}" class="axis">{v}</text>').format(y=pad_y + 4, v=_num(max(points))),
        Markup('<text x="2" y="{y}" class="axis">0</text>').format(y=height - 18),
    ]
    if shade is not None:
        x0, x1 = (pad_x + max(0.0, min(s, len(points) - 1)) * step for s in shade)
        parts.append(
            Markup('<rect class="shade" x="{x:.1f}" y="0" width="{w:.1f}" height="{h}"/>').format(
                x=x0, w=max(x1 - x0, 1.0), h=height - 16
            )
        )
    path = " ".join(f"{pad_x + i * step:.1f},{y:.1f}" for i, y in enumerate(ys))
    parts.append(Markup('<polyline class="line" fill="none" points="{p}"/>').format(p=path))
    for m in markers:
        x = pad_x + max(0.0, min(m.at, len(points) - 1)) * step
        parts.append(
            Markup(
                '<g class="marker"><line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{h}"/>'
                '<text x="{tx:.1f}" y="10" text-anchor="{anchor}">{label}</text><title>deploy {label}</title></g>'
            ).format(
                x=x,
                tx=x + 3 if x < width / 2 else x - 3,
                anchor="start" if x < width / 2 else "end",
                h=height - 16,
                label=m.label[:40],
            )
        )
    if labels:
        parts.append(Markup('<text x="{x}" y="{y}" class="axis">{t}</text>').format(x=pad_x, y=height - 2, t=labels[0]))
        parts.append(
            Markup('<text x="{x}" y="{y}" class="axis" text-anchor="end">{t}</text>').format(
                x=width - pad_x, y=height - 2, t=labels[-1]
            )
        )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def bar_chart(bars: Sequence[tuple[str, float]], *, width: int = 640, bar_height: int = 18, title: str = "") -> Markup:
    """Horizontal bars, one per (label, value), the value written after each."""
    top = max((v for _, v in bars), default=0.0) or 1.0
    label_w, value_w = 200, 60
    inner = width - label_w - value_w
    height = max(len(bars), 1) * (bar_height + 4)
    parts = [
        Markup('<svg class="bars" role="img" aria-label="{t}" width="{w}" height="{h}" viewBox="0 0 {w} {h}">').format(
            t=title, w=width, h=height
        )
    ]
    for i, (label, value) in enumerate(bars):
        y = i * (bar_height + 4)
        parts.append(
            Markup(
                '<text x="0" y="{ty}" class="axis">{label}</text>'
                '<rect class="bar" x="{x}" y="{y}" width="{bw:.1f}" height="{bh}"/>'
                '<text x="{vx:.1f}" y="{ty}" class="axis">{value}</text>'
            ).format(
                ty=y + bar_height - 4, label=escape(label[:32]), x=label_w, y=y, bw=max(inner * value / top, 1.0),
                bh=bar_height, vx=label_w + inner * value / top + 4, value=_num(value),
            )
        )  # fmt: skip
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"
