#!/usr/bin/env python3
"""Plot bench results: rows/s per method and size, one panel per group (read, write bw_plain, write bw_carto),
or seconds per method and link, one panel per query (bench/aggregate.sh).

    bench/plot.py RESULTS.csv OUT.png
    bench/plot.py --seconds RESULTS.csv OUT.png

RESULTS.csv holds lines `group,method,rows,rows_per_second` (bench/read.sh and bench/write.sh append them to
$BENCH_CSV). With --seconds it holds lines `query,method,link,seconds` (bench/aggregate.sh writes them; link is
`loopback` or the emulated link's rate): bars on a log scale, one colour per link, and the same numbers are
printed on stdout as a markdown table with one column per link. Draws an SVG with the standard library and turns it into a PNG with rsvg-convert (librsvg2-bin) or ImageMagick's `convert`
(no plotting library needed); the SVG stays beside the PNG.
"""
import csv
import math
import subprocess
import sys
from collections import OrderedDict
from html import escape

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def bar(parts, y, left, width, height, label, color, value):
    """One labelled bar of the chart, its value printed after it."""
    parts.append(f'<text x="10" y="{y + height - 4}" font-size="12">{escape(label)}</text>')
    parts.append(f'<rect x="{left}" y="{y}" width="{width}" height="{height}" fill="{color}"/>')
    parts.append(f'<text x="{left + width + 6}" y="{y + height - 4}" font-size="12">{escape(value)}</text>')


def to_png(svg, out):
    """Writes the SVG beside OUT and converts it to OUT."""
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


def seconds(src, out):
    """Seconds per query, method and link: a log-scale bar chart and a markdown table."""
    queries = OrderedDict()
    links = []
    for row in csv.reader(open(src)):
        if len(row) != 4:
            continue
        q, m, link, secs = row[0], row[1], row[2], float(row[3])
        queries.setdefault(q, OrderedDict()).setdefault(m, {})[link] = secs  # the last run of a link wins
        if link not in links:
            links.append(link)
    if not queries:
        sys.exit("no results in " + src)
    links.sort(key=lambda l: (l != "loopback", l))
    all_secs = [s for ms in queries.values() for by_link in ms.values() for s in by_link.values()]
    lo = 10 ** math.floor(math.log10(max(min(all_secs), 1e-3)))
    hi = 10 ** math.ceil(math.log10(max(all_secs)))
    bar_h, left, width, right = 16, 420, 1100, 150
    span = width - left - right

    def x_of(s):
        return left + span * (math.log10(max(s, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    parts = []
    y = 30
    for i, link in enumerate(links):
        parts.append(f'<rect x="{10 + 200 * i}" y="{y - 12}" width="14" height="14" fill="{COLORS[i % len(COLORS)]}"/>')
        parts.append(f'<text x="{30 + 200 * i}" y="{y}" font-size="13">{escape(link)}</text>')
    parts.append(f'<text x="{left}" y="{y}" font-size="13">seconds, log scale (shorter is faster)</text>')
    y += 24
    top_y = y
    for q, methods in queries.items():
        parts.append(f'<text x="10" y="{y + 12}" font-size="15" font-weight="bold">{escape(q)}</text>')
        y += 20
        for m, by_link in methods.items():
            for i, link in enumerate(links):
                if link not in by_link:
                    continue
                s = by_link[link]
                w = max(1, int(x_of(s) - left))
                bar(parts, y, left, w, bar_h, m, COLORS[i % len(COLORS)], f"{s:.3f} s")
                y += bar_h + 3
            y += 4
        y += 12
    k = lo
    while k <= hi * 1.0001:
        x = x_of(k)
        parts.append(f'<line x1="{x:.1f}" y1="{top_y}" x2="{x:.1f}" y2="{y}" stroke="#bbb" stroke-width="0.5"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 14}" font-size="11" text-anchor="middle">{k:g} s</text>')
        k *= 10
    y += 24
    to_png(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" font-family="sans-serif">'
           f'<rect width="100%" height="100%" fill="white"/>{"".join(parts)}</svg>', out)

    head = " | ".join(f"{l} (s) | {l}: × the first" for l in links)
    print(f"| query | method | {head} |")
    print("|---|---|" + "---:|---:|" * len(links))
    for q, methods in queries.items():
        base_m = next(iter(methods))  # the pushed (or parameterized) one comes first
        pushed = methods[base_m]
        for m, by_link in methods.items():
            cells = []
            for link in links:
                s = by_link.get(link)
                p = pushed.get(link)
                cells.append("" if s is None else f"{s:.3f}")
                cells.append("" if s is None or p is None or m == base_m else f"{s / p:.1f}×")
            print(f"| {q} | {m} | " + " | ".join(cells) + " |")


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
                bar(parts, y, left, w, bar_h, f"{m}, {n:,} rows", COLORS[k % len(COLORS)], f"{rps:,.0f}")
                y += bar_h + 3
            y += 4
        y += gap + 20
    to_png(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" font-family="sans-serif">'
           f'<rect width="100%" height="100%" fill="white"/>{"".join(parts)}</svg>', out)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--seconds"]:
        seconds(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], sys.argv[2])
