"""Trigger intake: what monitoring sends, turned into runs.

The pipeline reads like Alertmanager's notify pipeline, one small stage per module:

    authenticate  flows/api/auth.py      bearer token → role (+ optional HMAC signature)
    parse         alertmanager.py, grafana.py, events.py, metrics.py   payload → Alert / Event / Sample
    route         match.py, route.py     which SOP triggers a signal matches (label matchers)
                  rules.py, metrics.py   metric rules over the sample store (metrics.SampleStore)
    dedup         intake.py              the SOP's dedup key; the database decides (runs.open_key)
    start         intake.py              Engine.start(trigger=…) — or attach, or record a resolution

``intake.Intake`` composes the stages; each is tested alone under ``tests/triggers/``.
Nothing here imports FastAPI: the HTTP edge lives in ``flows/api/``.
"""
