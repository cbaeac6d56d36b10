"""What the SIP edge does with the outcome of a login: bans, metrics, and one log line per source
and reason. The thin stateful side of `protection.BanList` (it reads the edge's clock).

Only a failure the control plane confirmed (the digest did not match, or the user is unknown —
the two look alike on purpose) counts towards a ban. The sidecar hands the control plane only
answers to a nonce it issued to that very source (the nonce carries an HMAC of the source
address), so every counted failure proves a round trip: a spoofed source cannot get anybody
banned. What the sidecar refuses by itself (a nonce it did not issue, an algorithm it did not
offer, another realm) is logged and counted in metrics, never towards a ban.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sip2uc_core.refusal_log import RefusalLog, printable

from .protection import Ban, BanList
from .telemetry import EdgeMetrics

__all__ = ["WRONG_PASSWORD", "AuthGuard"]

_log = logging.getLogger("sip2uc_media.sidecar.auth")

#: The reason of a failure the control plane confirmed.
WRONG_PASSWORD = "wrong_password"  # noqa: S105 - a metric label, not a secret


class AuthGuard:
    def __init__(
        self,
        bans: BanList,
        metrics: EdgeMetrics,
        clock: Callable[[], float],
        *,
        refusals: RefusalLog | None = None,
        on_bans_changed: Callable[[], None] | None = None,
    ) -> None:
        self.bans = bans
        self._metrics = metrics
        self._clock = clock
        self._refusals = refusals or RefusalLog(_log)
        #: Told after a ban begins or is lifted (the control link reports the list).
        self.on_bans_changed = on_bans_changed

    def failed(self, host: str, user: str) -> None:
        """The control plane refused the credentials `user` presented from `host`."""
        now = self._clock()
        self._metrics.auth_failures.add(1, {"reason": WRONG_PASSWORD})
        self._refusals.note(
            host,
            WRONG_PASSWORD,
            now,
            lambda: f"unknown user or wrong password for {printable(user)} from {host}",
        )
        ban = self.bans.record_failure(host, user, now)
        if ban is not None:
            self._banned(ban)

    def succeeded(self, host: str, user: str) -> None:
        """The control plane accepted `user`'s credentials from `host`."""
        self.bans.record_success(host, user, self._clock())

    def refused(self, host: str, reason: str, why: str) -> None:
        """The sidecar refused a login by itself (`why` says why, for people); not a failure
        that counts towards a ban."""
        self._metrics.auth_failures.add(1, {"reason": reason})
        self._refusals.note(host, reason, self._clock(), lambda: why)

    def user_banned(self, host: str, user: Callable[[], str]) -> bool:
        """Whether requests for the user name `user()` from `host` are to be ignored (`user` is
        called only while some source and user name pair is banned)."""
        bans = self.bans
        return bans.has_user_bans and bans.is_user_banned(host, user(), self._clock())

    def lift(self, source: str) -> list[Ban]:
        lifted = self.bans.lift(source)
        for ban in lifted:
            who = source if ban.whole_source else f"{printable(ban.user)} from {source}"
            _log.warning("ban of %s lifted by an operator", who)
        if lifted and self.on_bans_changed is not None:
            self.on_bans_changed()
        return lifted

    def _banned(self, ban: Ban) -> None:
        reason = "user_names" if ban.whole_source else "failed_logins"
        self._metrics.bans.add(1, {"reason": reason})
        seconds = f"{ban.until - ban.start:g} s"
        if ban.whole_source:
            _log.warning("banned %s for %s: %s", ban.source, seconds, ban.reason)
        else:
            _log.warning(
                "banned %s from %s for %s: %s (other users there are still served)",
                printable(ban.user),
                ban.source,
                seconds,
                ban.reason,
            )
        if self.on_bans_changed is not None:
            self.on_bans_changed()
