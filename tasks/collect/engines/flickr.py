"""Flickr's REST API: ``flickr.photos.search`` with ``extras=license,owner_name,url_l,url_o`` so one request per
page gives each photo's image URL, licence id and owner (no ``getSizes`` call per photo).

Licence ids are those of ``flickr.photos.licenses.getInfo`` (:data:`FLICKR_LICENCES`); the photo page is
``https://www.flickr.com/photos/<owner>/<id>``. Needs ``FLICKR_API_KEY``.
"""

from __future__ import annotations

import json

from sufra.tasks.collect.engines.base import (
    Discovered,
    EngineAccessDeniedError,
    EngineError,
    EngineUnavailableError,
    ParsedPage,
    WebEngine,
    register_engine,
)

from sufra.utils.http import Fetcher

FLICKR_LICENCES: dict[str, tuple[str, str | None]] = {
    # id -> (normalised licence, licence URL), as flickr.photos.licenses.getInfo lists them
    "0": ("all-rights-reserved", None),
    "1": ("cc-by-nc-sa-2.0", "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    "2": ("cc-by-nc-2.0", "https://creativecommons.org/licenses/by-nc/2.0/"),
    "3": ("cc-by-nc-nd-2.0", "https://creativecommons.org/licenses/by-nc-nd/2.0/"),
    "4": ("cc-by-2.0", "https://creativecommons.org/licenses/by/2.0/"),
    "5": ("cc-by-sa-2.0", "https://creativecommons.org/licenses/by-sa/2.0/"),
    "6": ("cc-by-nd-2.0", "https://creativecommons.org/licenses/by-nd/2.0/"),
    "7": ("no-known-copyright", "https://www.flickr.com/commons/usage/"),
    "8": ("public-domain", "http://www.usa.gov/copyright.shtml"),  # United States Government Work
    "9": ("cc0-1.0", "https://creativecommons.org/publicdomain/zero/1.0/"),
    "10": ("public-domain", "https://creativecommons.org/publicdomain/mark/1.0/"),
}
SEARCH_LICENCES = "1,2,3,4,5,6,9,10"
"""Licence ids searched (Creative Commons, CC0 and the public domain mark), as before."""
BAD_KEY_CODES = (98, 99, 100)  # invalid auth token, user not logged in / insufficient permissions, invalid API key


@register_engine("flickr")
class FlickrEngine(WebEngine):
    default_base_url = "https://api.flickr.com"
    page_size = 100

    def __init__(self, fetcher: Fetcher, base_url: str | None = None, api_key: str | None = None):
        if api_key is None:
            from sufra.core.settings import sufra_settings

            secret = sufra_settings().flickr_api_key
            api_key = secret.get_secret_value() if secret else None
        if not api_key:
            raise EngineUnavailableError(
                "engine 'flickr' needs an API key: set FLICKR_API_KEY (or drop flickr from --engine)")
        self.api_key = api_key
        super().__init__(fetcher, base_url)

    def page_url(self, query: str, page: int, page_size: int) -> str | None:
        return self.url("/services/rest/", {
            "method": "flickr.photos.search", "api_key": self.api_key, "text": query, "license": SEARCH_LICENCES,
            "content_type": "1", "media": "photos", "sort": "relevance", "extras": "license,owner_name,url_l,url_o",
            "per_page": page_size, "page": page + 1, "format": "json", "nojsoncallback": "1",
        })

    def get(self, url: str) -> bytes:
        try:
            return super().get(url)
        except EngineError as exc:  # never show the key
            raise type(exc)(str(exc).replace(self.api_key, "***"), exc.reason) from None

    def parse(self, content: bytes, query: str) -> ParsedPage:
        data = json.loads(content)
        if data.get("stat") != "ok":
            code, message = data.get("code"), data.get("message", "")
            cls = EngineAccessDeniedError if code in BAD_KEY_CODES else EngineError
            raise cls(f"engine flickr: query {query!r}: API error {code}: {message}", f"api_{code}")
        photos = data.get("photos") or {}
        items = []
        for photo in photos.get("photo") or []:
            url = photo.get("url_l") or photo.get("url_o")
            if not url and photo.get("server") and photo.get("secret"):
                url = f"https://live.staticflickr.com/{photo['server']}/{photo['id']}_{photo['secret']}_b.jpg"
            if not url:
                continue
            licence, licence_url = FLICKR_LICENCES.get(str(photo.get("license")), ("unknown", None))
            owner = photo.get("owner")
            creator = photo.get("ownername") or owner
            items.append(Discovered(
                url=url, page_url=f"https://www.flickr.com/photos/{owner}/{photo['id']}" if owner else None,
                license=licence, license_url=licence_url, creator=creator,
                attribution=f"{photo.get('title') or 'photo'} by {creator} on Flickr" if creator else None,
            ))
        page, pages = int(photos.get("page") or 1), int(photos.get("pages") or 0)
        return ParsedPage(items, no_results=int(photos.get("total") or 0) == 0, last_page=page >= pages)
