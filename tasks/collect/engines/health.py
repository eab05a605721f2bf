"""``sufra engines check``: one small query per engine, a health row each (for a weekly deployment)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sufra.tasks.collect.engines.base import EngineError, make_engine

from sufra.core.errors import SufraError
from sufra.utils.http import Fetcher

HEALTH_QUERY = "pizza"
"""A query every engine has results for."""
CHECKED_ENGINES = ("commons", "openverse", "bing", "flickr", "baidu")
"""Engines checked when none are named (google is unsupported today)."""


class EnginesDownError(SufraError):
    """Some checked engines cannot be used now (the health table says why): exit status 1."""

    exit_code = 1


@dataclass(frozen=True)
class EngineHealthRow:
    """One engine's check: ``status`` ok (candidates found), empty (a genuine "no results" page), retry (a failure a
    later attempt can get past), down (no retry helps: unreachable, refused, unsupported); ``n_found`` candidates,
    ``n_licensed`` of them with a known licence, ``elapsed_s`` seconds, ``detail`` the one-line error."""

    engine: str
    status: str
    n_found: int = 0
    n_licensed: int = 0
    elapsed_s: float = 0.0
    detail: str = ""


def check_engines(names: list[str] | tuple[str, ...] = CHECKED_ENGINES, fetcher: Fetcher | None = None,
                  base_urls: dict[str, str] | None = None, query: str = HEALTH_QUERY,
                  max_num: int = 10) -> list[EngineHealthRow]:
    """One ``query`` (first ``max_num`` candidates) per engine of ``names``, in order; never raises for an engine
    failure (it becomes the row's status and detail). ``fetcher``: the guarded fetcher (default settings)."""
    from sufra.utils.http import FetchSettings

    fetcher = fetcher or Fetcher(FetchSettings())
    rows = []
    for name in names:
        started = time.monotonic()
        try:
            found = make_engine(name, fetcher, base_urls).discover(query, max_num)
        except EngineError as exc:
            rows.append(EngineHealthRow(name, "retry" if exc.retryable else "down",
                                        elapsed_s=round(time.monotonic() - started, 3), detail=str(exc)))
            continue
        licensed = sum(1 for d in found if d.license and d.license != "unknown")
        rows.append(EngineHealthRow(name, "ok" if found else "empty", len(found), licensed,
                                    round(time.monotonic() - started, 3)))
    return rows


def health_table(rows: list[EngineHealthRow]) -> str:
    """The rows as a fixed-width text table (engine, status, found, licensed, seconds, detail)."""
    lines = [f"{'engine':<10} {'status':<6} {'found':>5} {'licensed':>8} {'seconds':>7}  detail"]
    for r in rows:
        lines.append(f"{r.engine:<10} {r.status:<6} {r.n_found:>5} {r.n_licensed:>8} {r.elapsed_s:>7.2f}  {r.detail}")
    return "\n".join(lines)


def raise_if_unhealthy(rows: list[EngineHealthRow]) -> None:
    """:class:`EnginesDownError` naming the engines whose row is ``down`` or ``retry``."""
    bad = [r.engine for r in rows if r.status in ("down", "retry")]
    if bad:
        raise EnginesDownError(f"engines check: {len(bad)} of {len(rows)} engines cannot be used now: "
                               f"{', '.join(bad)} (see the table above)")
