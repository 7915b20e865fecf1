"""The one base class of routelib's errors about input, settings and the cache.

Every error routelib raises on purpose (a bad dataset file, an unknown model, a missing cache
part, a malformed table, a failing endpoint) derives from :class:`RoutelibError` as well as from
the built-in type it has always been (``ValueError``, ``LookupError``, ``RuntimeError``), so
callers can catch either. The command line prints such an error as one line and exits 2.
"""


class RoutelibError(Exception):
    """Base of every error routelib raises on purpose; its message says what to do."""
