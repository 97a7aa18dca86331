"""Keeping secrets out of logs, results and error messages: ``mask_url`` and ``redact``.

Their home is :mod:`flows.language.masking`, below every layer, so that a step that calls a URL
(an ``http`` step) masks its failure text the same way the notifications mask theirs.
"""

from __future__ import annotations

from flows.language.masking import MASK, SAFE_OPTIONS, mask_template, mask_url, redact, secrets_of

__all__ = ["MASK", "SAFE_OPTIONS", "mask_template", "mask_url", "redact", "secrets_of"]
