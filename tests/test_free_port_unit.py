"""The tests' ports: two processes started back to back (the team test's two API processes) were given the same
free port, and the second failed to bind it ("address already in use", exit 3)."""

from __future__ import annotations

from tests.support import free_port


def test_a_port_is_given_once() -> None:
    ports = [free_port() for _ in range(1000)]  # the kernel hands a port it freed out again, often within a hundred
    assert len(set(ports)) == len(ports)
