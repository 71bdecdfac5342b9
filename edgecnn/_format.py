"""Numbers for people: durations."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``; short durations keep one decimal."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
