"""Garbage-collector settings for the long-running server processes.

CPython's default thresholds (700 allocations for a young collection) make a busy SIP or RTP
server collect thousands of times a second, and every full collection walks every object it
has ever made: under load those pauses grew to hundreds of milliseconds, longer than SIP's
500 ms retransmission timer tolerates. After start-up the objects that live for the whole run
(modules, configuration, indexes loaded from the database) are moved out of the collector's
view with `gc.freeze()`, and young collections run less often. Reference counting still frees
everything without cycles at once; cycles are still collected, just in larger batches.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
OLDER_THRESHOLDS = (20, 100)


def tune_for_serving() -> None:
    """Freeze what exists now and collect less often; call once start-up is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
