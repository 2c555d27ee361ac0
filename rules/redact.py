"""Credentials inside URLs: found (to refuse them in a config file) and masked (to show a URL).

One function masks every URL we print or log: SQLAlchemy's `render_as_string(hide_password=True)`
hides the userinfo password but prints `?password=` and `?sslpassword=` as given.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

MASK = "***"

# Where a URL starts: a scheme, then "//" (database URLs, http, s3).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# "scheme://user:password@" as SQLAlchemy's URL grammar reads it (the user name may hold "@",
# the password runs to the next "@" and may hold "/" or "?"): whatever a driver would send as
# the password is inside what this masks. A port followed by an "@" later in the URL is masked
# too; that only hides more.
_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/]*:)(?P<secret>[^@]*)@")
# "http(s)://token@host": for web URLs a user name alone is a credential (an API token).
_WEB_USER = re.compile(r"^(?P<head>https?://)(?P<secret>[^:/?#@]+)@", re.IGNORECASE)
# A query parameter: its name (as written, maybe %-encoded) and its value.
_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#]*)=(?P<value>[^&;#]*)")
# Names of parameters that carry a secret, compared lower-case after %-decoding: libpq's
# password and sslpassword, tokens, API keys, signatures of presigned URLs.
_SECRET_NAME = re.compile(
    r"^(?:.*(?:password|passwd|passphrase|secret|token|signature|credential|credentials)"
    r"|pass|pwd|key|apikey|api_key|api-key|access_key|accesskey|auth|authorization|sig)$"
)


def looks_like_url(value: str) -> bool:
    """True for text that starts like a URL with an authority (scheme://)."""
    return bool(_URL.match(value))


def _secret_param(name: str) -> bool:
    return bool(_SECRET_NAME.match(unquote_plus(name).strip().lower()))


def url_credentials(url: str) -> list[str]:
    """What credentials `url` holds, described for an error message; [] when none."""
    if not looks_like_url(url):
        return []
    found = []
    if _PASSWORD.match(url):
        found.append("a password after the user name")
    elif _WEB_USER.match(url):
        found.append("a user name that works as a token")
    for m in _PARAM.finditer(url):
        if _secret_param(m["name"]) and m["value"]:
            found.append(f"the query parameter {unquote_plus(m['name'])!r}")
    return found


def mask_url(url: str) -> str:
    """`url` with every credential replaced by ***; any other text is returned unchanged."""
    if not looks_like_url(url):
        return url
    masked = _PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", url, count=1)
    if masked == url:
        masked = _WEB_USER.sub(lambda m: f"{m['head']}{MASK}@", url, count=1)
    return _PARAM.sub(
        lambda m: (
            f"{m['sep']}{m['name']}={MASK}"
            if _secret_param(m["name"]) and m["value"]
            else m.group(0)
        ),
        masked,
    )


def _secret_values(url: str) -> list[str]:
    values = []
    if m := _PASSWORD.match(url) or _WEB_USER.match(url):
        values.append(m["secret"])
    values += [m["value"] for m in _PARAM.finditer(url) if _secret_param(m["name"])]
    # Drivers see the decoded form; error texts may quote either.
    return sorted(
        {v for raw in values for v in (raw, unquote_plus(raw)) if v}, key=len, reverse=True
    )


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error message, say) with `url` and each credential in it masked."""
    if not looks_like_url(url):
        return text
    text = text.replace(url, mask_url(url))
    for secret in _secret_values(url):
        text = text.replace(secret, MASK)
    return text
