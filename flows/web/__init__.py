"""The people's pages: a responder's step page (from a personal link or a session), the run page, sign-in.

Server-rendered by the API's own FastAPI app (:func:`flows.web.app.mount`), one Jinja2
template per page (``templates/``), a little plain JavaScript for live clocks (``static/``),
nothing from a CDN, readable at 390 px. Identity first: a person acts through a signed,
single-use personal link (``flows.engine.links``), a session begun by a sign-in link sent to
their own contacts (``signin``), or the company's single sign-on through a trusted proxy
(``identity``); every action is recorded with who did it and how (``via: link`` / ``web``).

Owns: sessions (``sessions``), who is at the browser (``identity``), the step's form as a
page (``forms``), the pages and their actions (``pages``, ``signin``), the ops manager's board
(``board``: open runs, start, cancel, status updates), the library and people (``library``),
the auditor's desk (``desk``, read-only), silences for operators (``silences``), rendering (``render``).

May import: the engine (transitions, links, board, views), the audit (a run's story and
chart), the language, the ledger and notifications (the sign-in message). Never the API
(``flows.api`` mounts the pages), Prefect, the triggers, the runtime or the CLI.
"""
