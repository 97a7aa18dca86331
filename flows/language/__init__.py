"""The SOP language: what an SOP file and the site's ``config/`` say, validated.

Owns the models (``spec``: SOPs and triggers; ``fields``: the strict base, durations, typed
fields), YAML with file:line:col errors (``loader``), the cross-checks no single field can
make (``crosscheck``; ``latent``: what would otherwise fail only when a run starts or a step
runs; ``graph``: the steps' dependency graph, walked without recursion), the site (``config``), loading the library (``library``), templates
and expressions (``expressions``), durations, the escalation ladder (``ladder``: its rungs
and levels), and the step kinds (``steps``: one module per kind with its model and hooks,
registered in ``steps.KINDS``).

May import: ``flows.clock`` only, plus pydantic, Jinja2, PyYAML, croniter. Never Prefect,
FastAPI, SQLAlchemy, Apprise, nor any other layer: the engine, the compiler and the API
take these objects; nothing here knows how they run.
"""
