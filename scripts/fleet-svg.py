#!/usr/bin/env python3
"""Draw docs/fleet.svg, the picture of the fleet (docs/fleet.txt is its text twin).

    python3 scripts/fleet-svg.py            # writes docs/fleet.svg
    python3 scripts/fleet-svg.py --check    # exit 1 when docs/fleet.svg is not current

Python 3's standard library only; the same description always gives the same bytes.
The picture is described below as boxes (a title and a few lines each), arrows between
points and free labels, in pixels on a 960-wide canvas with a white background, so it
reads the same on GitHub's light and dark themes. Every text is in the generic
sans-serif family: nothing is fetched. A rough width estimate refuses a line that
would not fit in its box, so that a longer label is caught here rather than by eye.
"""

import sys
from pathlib import Path
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 960, 800

# Colours: dark text on pale fills, on a white background of our own.
INK = "#1b1f24"
MUTED = "#4b5563"
ACCENT = "#1d4ed8"  # HTTP
BUS = "#b45309"  # ZeroMQ
GATE = "#7c3aed"  # auth_request
FILLS = {
    "client": ("#f3f4f6", "#6b7280"),
    "edge": ("#e0ecff", "#1d4ed8"),
    "service": ("#ffffff", "#1d4ed8"),
    "app": ("#f5f3ff", "#7c3aed"),
    "data": ("#ecfdf5", "#047857"),
    "hub": ("#fff7ed", "#b45309"),
    "out": ("#f9fafb", "#6b7280"),
    "group": ("#f8fafc", "#94a3b8"),
}

# Boxes: (key, kind, x, y, width, height, title, [lines]).
BOXES = [
    ("browser", "client", 270, 64, 420, 58, "Browser or API client",
     ["HTML forms without JavaScript, JSON on the same routes"]),
    ("nginx", "edge", 40, 168, 880, 92, "nginx :8080 in development, :80 in production",
     ["the only public entry: security headers, per-client sign-in limits, keepalive 20 s",
      "static files: /  /people/  /api/  /assets/  /sitemap.xml  /feed.xml  /robots.txt",
      "/<svc>/metrics refused; /login/auth reached only by its own auth_request"]),
    ("signup", "service", 52, 342, 160, 74, "signup :7101",
     ["/signup", "creates accounts"]),
    ("login", "service", 224, 342, 160, 74, "login :7102",
     ["/login", "sign-in and tokens"]),
    ("profile", "service", 396, 342, 160, 74, "profile :7103",
     ["/profile", "your own account"]),
    ("admin", "service", 568, 342, 160, 74, "admin :7104",
     ["/admin", "the admin console"]),
    ("apps", "app", 760, 342, 160, 74, "your other apps",
     ["e.g. /hello/ :7190", "behind login's door"]),
    ("db", "data", 40, 500, 390, 92, "database: the single source of truth",
     ["SQLite var/flotilla.db (WAL), or PostgreSQL",
      "(DATABASE_URL): accounts, sessions, the job outbox,",
      "auth events, the append-only audit log"]),
    ("worker", "hub", 510, 500, 410, 92, "worker :7105 (internal only)",
     ["runs the jobs: mails, purges, hourly clean-ups",
      "ZeroMQ hub: PULL :7110 takes the wake-ups,",
      "XSUB :7111 events in, XPUB :7112 events out"]),
    ("pages", "data", 40, 652, 390, 84, "pages (flotilla-pages, no port)",
     ["build: a full atomic build (nightly timer)",
      "watch: each change within a second (events)",
      "writes the static site: var/www"]),
    ("mail", "out", 510, 652, 410, 84, "mail out",
     ["file: one .eml per message in var/mail (development)",
      "smtp: your mail server (STARTTLS, TLS or none)"]),
]

# The services' group frame, drawn behind them; its label goes at its foot.
GROUP = (40, 320, 700, 124, "the services: one actix-web binary each, on 127.0.0.1 by default")

# Arrows: (points, colour, dash, label, label_at (x, y), anchor, both ends).
ARROWS = [
    ([(480, 122), (480, 168)], ACCENT, None, "one origin, HTTP or HTTPS", (492, 150), "start", False),
    ([(132, 260), (132, 342)], ACCENT, None, "/signup", (140, 296), "start", False),
    ([(280, 260), (280, 342)], ACCENT, None, "/login", (288, 296), "start", False),
    ([(350, 260), (350, 342)], GATE, "2 3", "auth_request", (358, 290), "start", False),
    ([(476, 260), (476, 342)], ACCENT, None, "/profile", (484, 296), "start", False),
    ([(648, 260), (648, 342)], ACCENT, None, "/admin", (656, 296), "start", False),
    ([(840, 260), (840, 342)], ACCENT, None, "/hello/ …", (848, 296), "start", False),
    ([(230, 444), (230, 500)], ACCENT, None, "diesel on an r2d2 pool", (238, 476), "start", True),
    ([(600, 444), (600, 500)], BUS, "7 4", "wake-ups and events,", (608, 466), "start", True),
    ([(510, 546), (430, 546)], ACCENT, None, "jobs", (470, 538), "middle", True),
    ([(230, 592), (230, 652)], ACCENT, None, "reads the public profiles", (238, 626), "start", False),
    ([(560, 592), (430, 670)], BUS, "7 4", "user.* events", (508, 636), "start", False),
    ([(720, 592), (720, 652)], ACCENT, None, "sends", (728, 626), "start", False),
    # The static site goes back up to nginx along the left margin.
    ([(40, 694), (14, 694), (14, 214), (40, 214)], ACCENT, None, None, None, None, False),
]

LABELS = [
    # (x, y, text, size, colour, anchor, weight, rotate)
    (480, 34, "flotilla: the fleet", 20, INK, "middle", "bold", None),
    (358, 305, "/login/auth", 12, GATE, "start", None, None),
    (608, 482, "sealed with HMAC", 12, BUS, "start", None, None),
    (31, 454, "the site's files, served by nginx", 12, ACCENT, "middle", None, -90),
    (40, 770, "Solid: HTTP and SQL.", 12, MUTED, "start", None, None),
    (186, 770, "Dashed: ZeroMQ (PUSH to the worker's PULL; PUB/SUB through its XSUB/XPUB).",
     12, BUS, "start", None, None),
    (40, 788, "Dotted: nginx's auth_request to login before a request reaches another app "
     "(204 + X-Flotilla-* headers, or 401/403).", 12, GATE, "start", None, None),
]

# Average advance of a sans-serif character, in ems: generous, so that what fits here
# fits in DejaVu Sans and Liberation Sans too.
EM = 0.58


def text_width(text, size, bold=False):
    return len(text) * size * (EM + (0.04 if bold else 0))


def box(key, kind, x, y, w, h, title, lines, out):
    fill, stroke = FILLS[kind]
    out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" '
               f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>')
    pad = 10
    size_title, size_line = 14, 12
    rows = [(title, size_title, "bold")] + [(line, size_line, None) for line in lines]
    for text, size, weight in rows:
        need = text_width(text, size, weight == "bold") + 2 * pad
        if need > w:
            sys.exit(f"fleet-svg: '{text}' ({need:.0f} px) does not fit in {key} ({w} px)")
    centred = w < 200
    cx = x + w / 2 if centred else x + pad
    anchor = "middle" if centred else "start"
    ty = y + 21
    out.append(f'<text x="{cx:g}" y="{ty}" font-size="{size_title}" font-weight="bold" '
               f'fill="{INK}" text-anchor="{anchor}">{escape(title)}</text>')
    for i, line in enumerate(lines):
        ly = ty + 19 + i * 17
        colour = ACCENT if line.startswith("/") and centred else MUTED
        out.append(f'<text x="{cx:g}" y="{ly}" font-size="{size_line}" fill="{colour}" '
                   f'text-anchor="{anchor}">{escape(line)}</text>')
    if ty + 19 + (len(lines) - 1) * 17 + 6 > y + h:
        sys.exit(f"fleet-svg: the lines of {key} overflow its height")


def arrow(points, colour, dash, label, at, anchor, both, out):
    path = " ".join(f"{'M' if i == 0 else 'L'}{px:g},{py:g}" for i, (px, py) in enumerate(points))
    marker = {ACCENT: "http", BUS: "bus", GATE: "gate"}[colour]
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    start = f' marker-start="url(#{marker})"' if both else ""
    out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dashes} '
               f'marker-end="url(#{marker})"{start}/>')
    if label:
        lx, ly = at
        out.append(f'<text x="{lx:g}" y="{ly:g}" font-size="12" fill="{colour}" '
                   f'text-anchor="{anchor}">{escape(label)}</text>')


def render():
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" role="img" '
        'aria-labelledby="fleet-title fleet-desc">',
        '<title id="fleet-title">flotilla: the fleet</title>',
        '<desc id="fleet-desc">A browser reaches nginx, the only public entry. nginx '
        'serves the static site and sends /signup, /login, /profile and /admin to the '
        'services on ports 7101 to 7104, and other apps after an auth_request to '
        '/login/auth. The services use one database (SQLite or PostgreSQL) and wake the '
        'worker (port 7105) over ZeroMQ, whose hub takes wake-ups on 7110 and forwards '
        'events from 7111 to 7112. The worker runs the jobs and sends mail to files or '
        'SMTP; flotilla-pages reads the database and the events and writes the static '
        'site that nginx serves.</desc>',
        "<defs>",
    ]
    for name, colour in (("http", ACCENT), ("bus", BUS), ("gate", GATE)):
        out.append(f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" '
                   f'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
                   f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')
    out.append("</defs>")
    out.append(f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>')
    gx, gy, gw, gh, glabel = GROUP
    fill, stroke = FILLS["group"]
    out.append(f'<rect x="{gx}" y="{gy}" width="{gw}" height="{gh}" rx="10" fill="{fill}" '
               f'stroke="{stroke}" stroke-width="1" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{gx + 12}" y="{gy + gh - 7}" font-size="12" fill="{MUTED}">'
               f'{escape(glabel)}</text>')
    for spec in BOXES:
        box(*spec, out)
    for spec in ARROWS:
        arrow(*spec, out)
    for x, y, text, size, colour, anchor, weight, rotate in LABELS:
        attrs = f' font-weight="{weight}"' if weight else ""
        attrs += f' transform="rotate({rotate} {x} {y})"' if rotate else ""
        out.append(f'<text x="{x}" y="{y}" font-size="{size}" fill="{colour}" '
                   f'text-anchor="{anchor}"{attrs}>{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    target = Path(__file__).resolve().parent.parent / "docs" / "fleet.svg"
    svg = render()
    if sys.argv[1:] == ["--check"]:
        if not target.exists() or target.read_text(encoding="utf-8") != svg:
            sys.exit(f"{target} is not current: run python3 scripts/fleet-svg.py")
        return
    if sys.argv[1:]:
        sys.exit(__doc__)
    target.write_text(svg, encoding="utf-8")


if __name__ == "__main__":
    main()
