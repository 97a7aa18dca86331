"""The Prefect adapter: every SOP a Prefect flow and deployment, every run a flow run.

Owns the names on the Prefect server (``names``), building flows and deployments
(``deployments``), the module Prefect workers load flows from (``entrypoint``), what runs
inside a flow-run process (``flow_run``: the flow body, the task body, its engine) and
creating, resuming and cancelling flow runs (``launcher``).

May import: ``flows.engine`` and the layers below it, and Prefect. Never the triggers, the
API, the audit, the runtime or the CLI.
"""
