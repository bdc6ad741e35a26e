"""Charts drawn on the server: labels escaped, markers and shade placed where the series says."""

from __future__ import annotations

from prodloop.server.dashboard import svg


def test_labels_are_escaped() -> None:
    drawn = str(svg.line_chart([1, 2], labels=["<a>", "b"], markers=[svg.Marker(0, "<script>x</script>")], title='"t'))
    assert "<script>" not in drawn and "&lt;script&gt;x&lt;/script&gt;" in drawn and "&lt;a&gt;" in drawn
    bars = str(svg.bar_chart([("<img src=x>", 2.0)]))
    assert "<img" not in bars and "&lt;img src=x&gt;" in bars


def test_sparkline_top_is_the_largest_value() -> None:
    points = str(svg.sparkline([0, 4, 2], width=100, height=24)).split('points="')[1].split('"')[0].split()
    assert points == ["0.0,22.0", "50.0,2.0", "100.0,12.0"]


def test_marker_and_shade_positions() -> None:
    drawn = str(svg.line_chart([0] * 11, markers=[svg.Marker(5, "r1")], shade=(8, 10), width=236))
    assert 'x1="118.0"' in drawn  # 36 + 5 * (164 / 10)
    assert '<rect class="shade" x="167.2" y="0" width="32.8"' in drawn
