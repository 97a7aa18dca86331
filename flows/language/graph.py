"""The dependency graph of an SOP's steps: who waits for whom, read once, walked without recursion.

A chain may be 10,000 steps long and written last step first: every walk here keeps its own
stack (Python's would overflow) and each step's edges are read once (``Sop.dependencies``).
"""

from __future__ import annotations

from flows.language.spec import Sop


class StepGraph:
    """The SOP's dependency edges, read once: reachability and cycles without recursion (a chain may be 10,000 long)."""

    def __init__(self, sop: Sop):
        self.deps: dict[str, list[str]] = {}
        for step in sop.steps:
            self.deps[step.id] = sop.dependencies(step)

    def upstream(self, step_id: str) -> set[str]:
        """Every step that must finish (or be skipped) before ``step_id``; terminates on a cycle too."""
        seen: set[str] = set()
        stack = list(self.deps.get(step_id, ()))
        while stack:
            current = stack.pop()
            if current in seen or current not in self.deps:
                continue
            seen.add(current)
            stack.extend(self.deps[current])
        return seen

    def needs(self, step_id: str, target: str) -> bool:
        """True when ``target`` must finish before ``step_id`` (a search that stops when it finds it)."""
        direct = self.deps.get(step_id, ())
        if target in direct:
            return True
        seen: set[str] = set()
        stack = list(direct)
        while stack:
            current = stack.pop()
            if current == target:
                return True
            if current in seen or current not in self.deps:
                continue
            seen.add(current)
            stack.extend(self.deps[current])
        return False

    def cycle(self, order: list[str]) -> list[str] | None:
        """A dependency cycle (first repeated at the end, in the order the steps wait), or None."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for start in order:
            if start in state:
                continue
            trail: list[str] = [start]
            state[start] = 1
            pending = [iter(self.deps[start])]
            while pending:
                dep = next(pending[-1], None)
                if dep is None:
                    state[trail.pop()] = 2
                    pending.pop()
                    continue
                if dep not in self.deps:
                    continue
                if state.get(dep) == 1:
                    return list(reversed([*trail[trail.index(dep):], dep]))
                if dep not in state:
                    state[dep] = 1
                    trail.append(dep)
                    pending.append(iter(self.deps[dep]))
        return None

    def topological(self) -> list[str]:
        """Step ids, each after every step it depends on (the graph has no cycle)."""
        out: list[str] = []
        done: set[str] = set()
        for start in self.deps:
            if start in done:
                continue
            stack = [(start, iter(self.deps[start]))]
            done.add(start)
            while stack:
                node, deps = stack[-1]
                dep = next(deps, None)
                if dep is None:
                    out.append(node)
                    stack.pop()
                elif dep in self.deps and dep not in done:
                    done.add(dep)
                    stack.append((dep, iter(self.deps[dep])))
        return out
