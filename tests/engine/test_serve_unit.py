"""`sop serve`'s checks at start that need no stack: where the links in pages lead."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("base_url, port, missed", [
    ("http://127.0.0.1:8000", 8000, False),
    ("http://127.0.0.1:8000", 8036, True),  # SOP_API_PORT=8036 with the seed's base_url: every page link misses
    ("http://localhost:8000/", 8036, True),
    ("https://sops.example.com", 8036, False),  # a proxy in front: its address, not this port
    ("https://127.0.0.1", 443, False),
])
def test_serve_warns_when_the_links_in_pages_would_miss_its_api(base_url: str, port: int, missed: bool) -> None:
    from flows.runtime.serve import links_miss

    said = links_miss(base_url, "127.0.0.1", port)
    assert (said is not None) == missed
    if missed:
        assert f"listens on 127.0.0.1:{port}" in said and "set base_url" in said


@pytest.mark.parametrize("base_url", ["http://localhost:80800", "http://127.0.0.1:abc"])
def test_a_base_url_whose_port_is_no_port_is_warned_of_not_a_crash(base_url: str) -> None:
    from flows.runtime.serve import links_miss

    said = links_miss(base_url, "127.0.0.1", 8000)
    assert said is not None and "whose port is no port" in said
