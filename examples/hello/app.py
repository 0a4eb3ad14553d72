#!/usr/bin/env python3
"""hello: an app behind flotilla's nginx that reads the signed-in user from headers.

nginx asks the login service about each request to /hello/ and passes the answer to the
app as X-Flotilla-* headers, after removing any header of those names that the browser
sent. The app believes them only because nginx is the one way in: keep it listening on
127.0.0.1 (the default) or on an address that only nginx can reach.

    python3 app.py [HOST:PORT]        127.0.0.1:7190 by default; port 0 picks a free one
"""
import hmac, html, json, signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote

MAX_BODY = 64 * 1024
# Free text comes percent-encoded UTF-8 (so any character fits in a header): unquote it.
TEXT_HEADERS = {"email", "username", "display-name"}


class Html(str):
    """Markup that is already escaped: render() inserts it as it is."""


def render(template, *args, **kwargs):
    """str.format with every value HTML-escaped, except values that are Html already."""
    def escape(value):
        return value if isinstance(value, Html) else html.escape(str(value))
    return Html(template.format(*map(escape, args), **{k: escape(v) for k, v in kwargs.items()}))


def page(title, body):
    return render("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<link rel="stylesheet" href="/assets/site.css"></head>
<body><a class="skip-link" href="#main">Skip to the content</a>
<header class="site-header"><div class="bar"><a class="brand" href="/">flotilla</a>
<nav aria-label="Account"><ul class="nav"><li><a href="/profile">Your account</a></li></ul></nav></div></header>
<main id="main" tabindex="-1"><h1>{title}</h1>
{body}
</main></body></html>
""", title=title, body=body)


def signed_in_user(headers):
    """The user nginx vouched for, or None when nobody is signed in (open pages only)."""
    if not headers.get("X-Flotilla-User-Id"):
        return None
    def text(name):
        return unquote(headers.get(f"X-Flotilla-{name}", ""))
    email = text("Email")
    return SimpleNamespace(
        email=email, name=text("Display-Name") or text("Username") or email,
        role=headers.get("X-Flotilla-Role", ""),
        verified=headers.get("X-Flotilla-Email-Verified") == "true",
        csrf_token=headers.get("X-Flotilla-Csrf-Token", ""))


def flotilla_headers(headers):
    """Every X-Flotilla-* header that came, by the rest of its lower-cased name, text
    decoded; a list of values if one came more than once (so a copy nginx let through shows)."""
    found = {}
    for name in dict.fromkeys(n.lower() for n in headers if n.lower().startswith("x-flotilla-")):
        key = name.removeprefix("x-flotilla-")
        values = [unquote(v) if key in TEXT_HEADERS else v for v in headers.get_all(name)]
        found[key] = values[0] if len(values) == 1 else values
    return found


def home(user, message=None):
    return page(f"Hello, {user.name}", render("""{received}
<p>Role: {role}. Address {email}: {verified}.</p>
<form method="post" action="/hello/"><input type="hidden" name="csrf_token" value="{csrf}">
<label for="message">Message</label><input id="message" name="message">
<button>Send</button></form>
<ul class="actions"><li><a href="/hello/welcome">Welcome page</a></li>{admin}</ul>
<form method="post" action="/login/logout"><input type="hidden" name="csrf_token" value="{csrf}">
<button>Sign out</button></form>""",
        received=render("<p>Received: {0}</p>", message) if message is not None else "",
        role=user.role, email=user.email, csrf=user.csrf_token,
        verified="confirmed" if user.verified else "not confirmed yet",
        admin=render('<li><a href="/hello/admin">Administrators\' corner</a></li>')
        if user.role == "admin" else ""))


def welcome(user):
    if user is None:
        return page("Hello, stranger",
                    render('<p><a href="/login?next=/hello/welcome">Sign in</a></p>'))
    return page(f"Hello, {user.name}", render('<p><a href="/hello/">Your page</a></p>'))


# nginx lets only admins reach /hello/admin and only confirmed addresses /hello/verified.
# The app does not check again, so a test through nginx sees nginx's own refusal.
PAGES = {
    "/hello/": home,
    "/hello/admin": lambda user: page(
        f"Administrators' corner, {user.name}", render("<p>Your role: {0}.</p>", user.role)),
    "/hello/verified": lambda user: page(
        f"Confirmed addresses only, {user.name}",
        render("<p>Your address {0} is confirmed.</p>", user.email)),
}
NO_USER = 401, "No signed-in user: reach this app through nginx\n", "text/plain"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path, user = self.path.partition("?")[0], signed_in_user(self.headers)
        if path == "/hello/api/me":
            me = {"signed_in": user is not None, **flotilla_headers(self.headers)}
            self.reply(200, json.dumps(me, ensure_ascii=False), "application/json")
        elif path == "/hello/welcome":  # open to all: the headers come only with a user
            self.reply(200, welcome(user))
        elif path not in PAGES:
            self.reply(404, "Not found\n", "text/plain")
        elif user is None:
            self.reply(*NO_USER)
        else:
            self.reply(200, PAGES[path](user))

    def do_POST(self):
        user, length = signed_in_user(self.headers), self.headers.get("Content-Length", "0")
        if self.path.partition("?")[0] != "/hello/":
            return self.reply(404, "Not found\n", "text/plain")
        if user is None:
            return self.reply(*NO_USER)
        if not length.isdigit():
            return self.reply(400, "Content-Length must be a number of bytes\n", "text/plain")
        if int(length) > MAX_BODY:
            # Read it off, unkept: closing on a body nginx is still sending makes it a 502.
            for left in range(int(length), 0, -MAX_BODY):
                self.rfile.read(min(left, MAX_BODY))
            return self.reply(413, page("Too long", render("<p>A form is at most 64 KiB.</p>")))
        form = parse_qs(self.rfile.read(int(length)).decode("utf-8", "replace"))
        sent = form.get("csrf_token", [""])[0]
        # compare_digest takes str of ASCII only, so compare bytes; an empty header is no token.
        if not (sent and user.csrf_token
                and hmac.compare_digest(sent.encode(), user.csrf_token.encode())):
            return self.reply(403, page("Form refused", render(
                '<p>The form token is missing or wrong: <a href="/hello/">open the page '
                "again</a> and send the form from there.</p>")))
        self.reply(200, home(user, message=form.get("message", [""])[0]))

    def reply(self, status, body, content_type="text/html"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")  # pages carry the user and the form token
        self.end_headers()
        self.wfile.write(data)


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7190").rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    for signum in signal.SIGTERM, signal.SIGINT:  # a clean exit, even when started with &
        signal.signal(signum, lambda *_: sys.exit(0))
    print("hello: listening on http://%s:%d" % server.server_address[:2], flush=True)
    with server:
        server.serve_forever()


if __name__ == "__main__":
    main()
