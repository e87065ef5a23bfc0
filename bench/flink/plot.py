"""Throughput per Nexmark query, Fungi beside Flink, as an SVG bar chart (no plotting
library: the chart is a few rectangles, and the scripts stay free of dependencies).

Usage: python plot.py COMPARISON.json OUT.svg   (compare.py --plot calls it too)
"""

import json
import sys

BAR, GAP, LEFT, WIDTH = 12, 10, 60, 520


def svg(result):
    """The chart of one comparison (compare.py's JSON) as SVG text."""
    rows = [q for q in result["queries"] if q.get("fungi_events_per_second")]
    top = max(max(q["fungi_events_per_second"], q["flink_events_per_second_net_of_startup"])
              for q in rows)
    height = 70 + len(rows) * (2 * BAR + GAP)
    scale = WIDTH / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 120}" '
           f'height="{height}" font-family="sans-serif" font-size="12">',
           f'<title>Nexmark throughput, Fungi and Flink 2.3, parallelism '
           f'{result["parallelism"]}, {result["events"]} events</title>',
           f'<rect width="100%" height="100%" fill="#fff"/>',
           f'<text x="{LEFT}" y="18">events/s, parallelism {result["parallelism"]}, '
           f'{result["events"]:,} events, median of {result["runs"]} runs '
           f'(Flink net of its {result["flink_startup_seconds"]:.1f} s start-up)</text>',
           f'<rect x="{LEFT}" y="28" width="12" height="10" fill="#2b7bb9"/>'
           f'<text x="{LEFT + 16}" y="37">Fungi</text>',
           f'<rect x="{LEFT + 70}" y="28" width="12" height="10" fill="#e6862e"/>'
           f'<text x="{LEFT + 86}" y="37">Flink</text>']
    y = 50
    for q in rows:
        fungi, flink = q["fungi_events_per_second"], q["flink_events_per_second_net_of_startup"]
        out.append(f'<text x="{LEFT - 8}" y="{y + BAR + 4}" text-anchor="end">{q["query"]}</text>')
        for value, colour, dy in ((fungi, "#2b7bb9", 0), (flink, "#e6862e", BAR)):
            w = max(value * scale, 1)
            out.append(f'<rect x="{LEFT}" y="{y + dy}" width="{w:.1f}" height="{BAR - 1}" '
                       f'fill="{colour}"/>')
            out.append(f'<text x="{LEFT + w + 4:.1f}" y="{y + dy + BAR - 2}" font-size="10">'
                       f'{value / 1e6:.2f} M</text>')
        y += 2 * BAR + GAP
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    result = json.load(open(sys.argv[1]))
    with open(sys.argv[2], "w") as f:
        f.write(svg(result))


if __name__ == "__main__":
    main()
