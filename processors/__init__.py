"""dialer-stats: live, exact campaign and batch statistics for an outbound call dialer.

Exception tree::

    DialerStatsError
    ├── StoreUnavailable      Redis could not be reached or answered with an error
    ├── InfraError            the embedded broker or valkey could not be started
    ├── UndecodableLog        the event log holds a batch that cannot be decoded
    └── TimeWindowError       a time series or window that cannot be answered (also a
                              ValueError; processors.domain.timeseries)
"""


class DialerStatsError(Exception):
    """Root of every error raised by dialer-stats."""


class StoreUnavailable(DialerStatsError):
    """Redis could not be reached or answered with an error."""


class InfraError(DialerStatsError):
    """The embedded broker or Redis-compatible server could not be started."""


class UndecodableLog(DialerStatsError):
    """The event log holds a batch that cannot be decoded (a codec missing, corrupt data)."""
