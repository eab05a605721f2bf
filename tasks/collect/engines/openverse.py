"""Openverse (openly licensed media, api.openverse.org): ``/v1/images/?q=&page_size=&page=``.

Anonymous use is limited to ``page_size`` 20 and a depth of 240 results (page * page_size); with an access token
(``SUFRA_OPENVERSE_TOKEN``, a SecretStr, sent as ``Authorization: Bearer``) pages go up to 500 results each.
Results carry the licence (``license`` + ``license_version`` + ``license_url``), creator, attribution text and the
landing page (``foreign_landing_url``).
"""

from __future__ import annotations

import json

from pydantic import SecretStr
from sufra.tasks.collect.engines.base import Discovered, ParsedPage, WebEngine, register_engine
from sufra.tasks.collect.engines.licences import normalise_licence

from sufra.core.settings import sufra_settings
from sufra.utils.http import Fetcher

ANONYMOUS_PAGE_SIZE = 20
ANONYMOUS_MAX_RESULTS = 240
TOKEN_PAGE_SIZE = 500


@register_engine("openverse")
class OpenverseEngine(WebEngine):
    default_base_url = "https://api.openverse.org"
    page_size = ANONYMOUS_PAGE_SIZE

    def __init__(self, fetcher: Fetcher, base_url: str | None = None, token: SecretStr | None = None,
                 license_type: str | None = None):
        """``license_type``: Openverse's filter (``commercial``, ``modification``, ``all-cc`` ... comma-separated),
        None for every licence."""
        self.license_type = license_type
        token = token or sufra_settings().openverse_token
        self.authenticated = bool(token and token.get_secret_value())
        if self.authenticated:
            fetcher = fetcher.with_headers({"Authorization": f"Bearer {token.get_secret_value()}"})
            self.page_size = TOKEN_PAGE_SIZE
        super().__init__(fetcher, base_url)

    def page_url(self, query: str, page: int, page_size: int) -> str | None:
        if not self.authenticated and (page + 1) * page_size > ANONYMOUS_MAX_RESULTS:
            return None  # the API answers 401 past the anonymous depth
        params = {"q": query, "page_size": page_size, "page": page + 1}
        if self.license_type:
            params["license_type"] = self.license_type
        return self.url("/v1/images/", params)

    def parse(self, content: bytes, query: str) -> ParsedPage:
        data = json.loads(content)
        items = []
        for result in data.get("results") or []:
            if not result.get("url"):
                continue
            code, version = result.get("license") or "", result.get("license_version") or ""
            licence_url = result.get("license_url") or None
            items.append(Discovered(
                url=result["url"], page_url=result.get("foreign_landing_url"),
                license=normalise_licence(f"{code} {version}".strip() if code not in ("cc0", "pdm") else code,
                                          licence_url),
                license_url=licence_url, creator=result.get("creator") or None,
                attribution=result.get("attribution") or None,
            ))
        page, page_count = data.get("page", 1), data.get("page_count", 1)
        return ParsedPage(items, no_results=data.get("result_count") == 0, last_page=page >= page_count)
