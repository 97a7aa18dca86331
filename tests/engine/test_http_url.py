"""A value placed in an http step's URL cannot change which path or query is called.

``traffic-surge`` calls ``{{ config.cloud_api }}/v1/scaling-groups/{{ inputs.service }}/capacity``, and
``service`` is an alert's label: whoever can set a label (a monitor token, a scraped target) must not be able
to make the engine call ``/admin/users/1`` on the same API with its credentials.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from flows.language.steps import KINDS, StepContext
from flows.language.steps.http import HttpStep


@pytest.fixture
def api() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 keeping the raw path of every request it gets."""
    paths: list[str] = []

    class Keeps(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the handler's name in http.server
            paths.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Keeps)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", paths
    server.shutdown()


def call(url: str, base: str, service: str) -> None:
    step = HttpStep.model_validate({"id": "scale", "kind": "http", "request": {"url": url}, "timeout": "5s"})
    KINDS["http"].execute(step, StepContext(variables={"config": {"cloud_api": base}, "inputs": {"service": service},
                                                       "run": {"id": "r1"}}, run_id="r1"))  # type: ignore[misc]


@pytest.mark.parametrize("service, segment", [
    ("../../../admin/users/1?x=<script>#", "..%2F..%2F..%2Fadmin%2Fusers%2F1%3Fx%3D%3Cscript%3E%23"),
    ("..", "%2E%2E"),
    ("cart api", "cart%20api"),
    ("cart", "cart"),
])
def test_a_label_in_a_url_stays_in_its_segment(api: tuple[str, list[str]], service: str, segment: str) -> None:
    base, paths = api
    call("{{ config.cloud_api }}/v1/scaling-groups/{{ inputs.service }}/capacity", base, service)
    assert paths == [f"/v1/scaling-groups/{segment}/capacity"]


def test_a_label_in_a_query_stays_one_value_and_the_base_is_taken_whole(api: tuple[str, list[str]]) -> None:
    base, paths = api
    call("{{ config.cloud_api }}/v1/groups?name={{ inputs.service }}&run={{ run.id }}", base, "a&admin=1#x")
    assert paths == ["/v1/groups?name=a%26admin%3D1%23x&run=r1"]


def test_the_base_may_be_written_around_values_and_urlencode_is_not_done_twice(api: tuple[str, list[str]]) -> None:
    base, paths = api
    host = base.removeprefix("http://")  # 127.0.0.1:PORT: a colon the path's rule would have encoded
    for url in ("http://{{ config.host }}/v1/{{ inputs.service }}",
                "{% if config.host %}{{ config.cloud_api }}{% endif %}/v1/{{ inputs.service }}",
                "{{ config.cloud_api }}/v1/{{ inputs.service | urlencode }}"):
        step = HttpStep.model_validate({"id": "s", "kind": "http", "request": {"url": url}, "timeout": "5s"})
        KINDS["http"].execute(step, StepContext(variables={  # type: ignore[misc]
            "config": {"cloud_api": base, "host": host}, "inputs": {"service": "../a b"}, "run": {"id": "r1"}},
            run_id="r1"))
    assert paths == ["/v1/..%2Fa%20b"] * 3  # Jinja's own urlencode kept the /: ../ went through it
