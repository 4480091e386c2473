"""Business metrics of the users service."""

from prometheus_client import Counter

REGISTRATIONS = Counter("flotilla_registrations_total", "Account registrations by result.", ["result"])
LOGINS = Counter("flotilla_logins_total", "Logins by result.", ["result"])
TOKENS_ISSUED = Counter(
    "flotilla_client_tokens_issued_total", "Client-credentials tokens issued, by client.", ["client"]
)
THROTTLED = Counter(
    "flotilla_throttled_requests_total",
    "Requests refused by a per-address rate limit, by limit.",
    ["limit"],
)
