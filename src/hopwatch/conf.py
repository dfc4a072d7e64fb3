"""hopwatch's settings: one ``HOPWATCH`` dict in the project's settings.

Read lazily on every access, so ``override_settings(HOPWATCH=...)`` works in
tests. Unknown keys are reported by the system check ``hopwatch.E002``.
"""

from __future__ import annotations

from typing import Any, Final

from django.conf import settings as django_settings

#: Every setting with its default. ``docs/settings.md`` documents each one.
DEFAULTS: Final[dict[str, Any]] = {
    # Install the asgiref patch and log requests. Off: hopwatch does nothing.
    "ENABLED": True,
    # Where request lines go: "logging" (the stdlib logger named LOGGER_NAME),
    # "stdout", or a file path (appended to, one JSON object per line).
    "OUTPUT": "logging",
    "LOGGER_NAME": "hopwatch",
    # Request header whose value becomes request_id (when it looks sane).
    "REQUEST_ID_HEADER": "X-Request-ID",
    # Fraction of requests to log (0.0-1.0). Counting is never sampled.
    "SAMPLE_RATE": 1.0,
    # Log only requests with at least this many hops / this much hop time.
    "MIN_HOPS": 0,
    "MIN_HOP_MS": 0.0,
    # How many causes the line lists in "sites".
    "SITES_LIMIT": 10,
    # Detail mode: add the per-hop list ("detail"), capped at DETAIL_LIMIT.
    "DETAIL": False,
    "DETAIL_LIMIT": 100,
    # A callable (or its dotted path) taking (request, record) and returning
    # a dict of extra top-level fields for the line.
    "EXTRA_FIELDS": None,
    # Unmatched (404) paths are truncated to this many characters.
    "PATH_MAX_LENGTH": 200,
    # Measure what a no-op hop costs on this host, once, in a background
    # thread at start-up; lines then carry hop_tax_us.
    "MEASURE_HOP_TAX": False,
    # Seconds between hopwatch.process lines (thread pools, threads, saturation);
    # 0: off. Read at start-up.
    "PROCESS_LINE_SECONDS": 0,
    # OpenTelemetry (hopwatch.otel, needs the "otel" extra): per-request metrics
    # through the global MeterProvider, and a child span per crossing under the
    # request's span. Read at start-up: off, opentelemetry is never imported.
    "OTEL_METRICS": False,
    "OTEL_SPANS": False,
    # Profiling (hopwatch.profiling): off unless PROFILE_DIR is set.
    "PROFILE_DIR": None,
    "PROFILE_TOKEN": None,
    "PROFILE_HEADER": "X-Hopwatch-Profile",
    "PROFILE_STAFF_PARAM": None,
    "PROFILE_INLINE_PARAM": "hopwatch-profile-inline",
    "PROFILE_AUTO_SAMPLE": 0.0,
    "PROFILE_AUTO_MIN_HOP_MS": 0.0,
    "PROFILE_AUTO_MIN_DURATION_MS": 0.0,
    "PROFILE_RATE_LIMIT": 6,
    "PROFILE_INTERVAL": 0.001,
}


#: Headers never read as a request id, whatever REQUEST_ID_HEADER says: they carry secrets.
CREDENTIAL_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-csrftoken", "x-api-key"}
)


class Settings:
    """Attribute access to the merged settings: ``hopwatch_settings.SAMPLE_RATE``.

    The merged dict is cached until ``settings.HOPWATCH`` is another object
    (``override_settings`` replaces it), so a lookup costs one attribute read
    and one identity check, not a merge.
    """

    def __init__(self) -> None:
        self._source: object = object()
        self._merged: dict[str, Any] = dict(DEFAULTS)

    def merged(self) -> dict[str, Any]:
        """All settings, defaults filled in (a snapshot: do not mutate)."""
        user = getattr(django_settings, "HOPWATCH", None)
        if user is not self._source:
            merged = dict(DEFAULTS)
            if isinstance(user, dict):
                merged.update((k, v) for k, v in user.items() if k in DEFAULTS)
            self._merged, self._source = merged, user
        return self._merged

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"hopwatch has no setting {name!r}")
        return self.merged()[name]

    def user_dict(self) -> Any:
        return getattr(django_settings, "HOPWATCH", None)


hopwatch_settings = Settings()
