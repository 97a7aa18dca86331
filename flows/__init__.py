"""SOPs as code: the engine (spec, compiler, steps, timers, ledger, triggers, API, CLI)."""
