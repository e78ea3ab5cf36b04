#!/usr/bin/env python3
"""Plot bench results: rows/s per method and size, one panel per group (read, write bw_plain, write bw_carto).

    bench/plot.py RESULTS.csv OUT.png

RESULTS.csv holds lines `group,method,rows,rows_per_second` (bench/read.sh and bench/write.sh append them to
$BENCH_CSV). Draws an SVG with the standard library and turns it into a PNG with rsvg-convert (librsvg2-bin) or ImageMagick's `convert`
(no plotting library needed); the SVG stays beside the PNG.
"""
import csv
import subprocess
import sys
from collections import OrderedDict
from html import escape

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def main(src, out):
    groups = OrderedDict()
    for row in csv.reader(open(src)):
        if len(row) != 4:
            continue
        g, m, n, rps = row[0], row[1], int(row[2]), float(row[3])
        groups.setdefault(g, OrderedDict()).setdefault(m, {})[n] = rps  # the last run of a method/size wins
    if not groups:
        sys.exit("no results in " + src)
    bar_h, gap, left, width = 16, 10, 330, 900
    y = 40
    parts = []
    for g, methods in groups.items():
        sizes = sorted({n for v in methods.values() for n in v})
        top = max(r for v in methods.values() for r in v.values())
        parts.append(f'<text x="10" y="{y}" font-size="16" font-weight="bold">{escape(g)} (rows/s)</text>')
        y += 12
        for m, by_size in methods.items():
            for k, n in enumerate(sizes):
                if n not in by_size:
                    continue
                rps = by_size[n]
                w = max(1, int((width - left - 120) * rps / top))
                parts.append(f'<text x="10" y="{y + bar_h - 4}" font-size="12">{escape(m)}, {n:,} rows</text>')
                parts.append(f'<rect x="{left}" y="{y}" width="{w}" height="{bar_h}" fill="{COLORS[k % len(COLORS)]}"/>')
                parts.append(f'<text x="{left + w + 6}" y="{y + bar_h - 4}" font-size="12">{rps:,.0f}</text>')
                y += bar_h + 3
            y += 4
        y += gap + 20
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" font-family="sans-serif">'
           f'<rect width="100%" height="100%" fill="white"/>{"".join(parts)}</svg>')
    svg_path = out.rsplit(".", 1)[0] + ".svg"
    with open(svg_path, "w") as f:
        f.write(svg)
    for cmd in (["rsvg-convert", "-o", out, svg_path], ["convert", svg_path, out]):
        try:
            if subprocess.run(cmd).returncode == 0:
                return
        except FileNotFoundError:
            pass
    sys.exit(f"wrote {svg_path}; no SVG-to-PNG converter (apt-get install librsvg2-bin) for {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
