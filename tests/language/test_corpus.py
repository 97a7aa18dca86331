"""A corpus of broken SOP and config files, and what `sop validate` must say about each.

Every file in ``corpus/`` holds one mistake (or a small known set). What the author must be
told, and where, is listed here and not in the files: line, column (None where a column
means nothing), the field path, and a part of the message. SOP files are checked against the
repo's ``config/``; a config file given alone is validated as a site of its own.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import NamedTuple

import pytest

from flows.language.library import load_site, load_sop, validate_paths
from flows.language.loader import Document, SpecError, read_document


class E(NamedTuple):
    """An error the author must see."""

    line: int
    column: int | None
    path: str
    message: str


MISSING_VAR = "CORPUS_BO_CHEN_URL"
#: variables the corpus reads, unset while it is checked
CORPUS_VARS = (MISSING_VAR, "CORPUS_BO_CHEN_MAIL")

EXPECTED: dict[str, list[E]] = {
    # --- malformed YAML, not a mapping, empty ------------------------------------------------
    "yaml-bad-indent.yaml": [E(8, 9, "", "mapping values are not allowed here; check this line's indentation")],
    "yaml-unclosed-quote.yaml": [E(2, 8, "", "the quoted text starting here is not closed")],
    "yaml-unclosed-bracket.yaml": [E(5, 7, "", "the `[` list starting here is not closed")],
    "yaml-tab.yaml": [E(7, 1, "", "indent with spaces, not tabs")],
    "yaml-list-item-indent.yaml": [E(9, 4, "", "this list item (`- …`) is indented differently from the lines before it")],
    "yaml-key-indent.yaml": [E(8, 4, "", "this line is indented differently from the lines before it")],
    "top-level-list.yaml": [E(1, None, "", "expected a YAML mapping at the top, got list")],
    "empty.yaml": [E(1, None, "", "the file is empty")],
    "duplicate-yaml-keys.yaml": [E(9, 5, "steps[0].due", "duplicate key 'due' (first defined on line 8)")],
    "yaml-quotes-in-quotes.yaml": [
        E(2, 13, "", "this `\"` ends the quoted value that starts at column 8, and text follows it; to write `\"` "
                     "inside a value, put the value in single quotes ('VIP \"closed\" case') or write \\\" for each")
    ],
    "yaml-template-unquoted.yaml": [
        E(7, 8, "dedup", "a value that starts with `{{` must be quoted (without quotes YAML reads `{ … }` as a mapping): "
                         "write dedup: \"{{ inputs.customer }}\"")
    ],
    "yaml-full-width-colon.yaml": [
        E(3, 6, "", "this is a full-width colon `：` (U+FF1A, as Chinese input methods type it): YAML needs the "
                    "ASCII colon `:` after a key; write `class: outage`")
    ],
    "enum-yes-no.yaml": [
        E(9, 38, "steps[0].form.refunded.enum", "enum values [True, False] are not of type string: YAML reads yes, "
                                                "no, on, off, true and false without quotes as booleans; quote them to "
                                                "keep them as text (\"yes\", \"no\")")
    ],
    "version-float.yaml": [
        E(5, 10, "version", "`version` 1.1 is read as a number (YAML reads 1.10 as 1.1): quote it to keep it as "
                            "written (version: \"1.10\")")
    ],
    # --- fields: types, names, required ------------------------------------------------------
    "wrong-type-integer.yaml": [E(9, 14, "steps[0].retries", "expected a valid integer")],
    "wrong-type-list-for-mapping.yaml": [E(6, 3, "inputs", "expected a mapping, got list")],
    "unknown-field-typo.yaml": [
        E(8, 5, "steps[0].descripton", "unknown field `descripton`; did you mean `description`?")
    ],
    "step-assignee-typo.yaml": [E(6, 5, "steps[0]", "unknown field `asignee`; did you mean `assignee`?")],
    "unknown-step-kind.yaml": [
        E(7, 11, "steps[0].kind", "unknown step kind 'email'; expected `kind` to be one of human")
    ],
    "missing-title.yaml": [E(1, None, "title", "required field `title` is missing")],
    "missing-owner.yaml": [E(1, None, "owner", "required field `owner` is missing")],
    "missing-steps.yaml": [E(1, None, "steps", "required field `steps` is missing")],
    "empty-steps.yaml": [E(5, 8, "steps", "expected at least 1 item(s), got 0")],
    "title-empty.yaml": [E(2, 8, "title", "the title is empty (expected one line a responder reads in a page)")],
    "title-blank-step.yaml": [E(7, 12, "steps[0].title", "the title is empty (expected one line a responder reads in a page)")],
    "title-two-lines.yaml": [
        E(2, 8, "title", "a title is one line (a responder reads it in a page), this one has 2 lines: "
                         "write it on one line and put the rest in `description`")
    ],
    "title-too-long.yaml": [
        E(7, 12, "steps[0].title", "a title is at most 120 characters (a responder reads it in a page), "
                                   "this one has 2,200: shorten it and put the rest in `description`")
    ],
    "title-left-empty.yaml": [E(2, 7, "title", "`title` is empty (expected text)")],
    "ladder-rung-without-notify.yaml": [
        E(12, 9, "steps[0].escalation[1].notify", "required field `notify` is missing")
    ],
    "ladder-notify-left-empty.yaml": [E(7, None, "escalation[0].notify", "`notify` is empty (expected a list)")],
    "ladder-notify-empty-list.yaml": [E(7, 13, "escalation[0].notify", "expected at least 1 item(s), got 0")],
    "step-left-empty.yaml": [E(8, 4, "steps[1]", "`steps[1]` is empty; expected `kind` to be one of human")],
    "enum-default-not-in-enum.yaml": [E(9, 14, "inputs.severity.default", "default 'critical' is not one of the enum")],
    "enum-labels-not-a-choice.yaml": [E(12, 22, "steps[0].form.category.enum_labels",
                                        "enum_labels names 'rumor_or_fake', not a choice of the enum (product_quality, "
                                        "rumour_or_fake, other)")],
    "enum-labels-read-the-same.yaml": [E(11, 15, "steps[0].form.channel.enum", "the choices 'email_sms' and 'email-sms' "
                                                                               "would both read 'Email sms': give them "
                                                                               "labels apart in enum_labels")],
    # --- durations and timeouts --------------------------------------------------------------
    "due-bare-number.yaml": [E(8, 10, "steps[0].due", "expected a duration such as 30s, 15m, 2h")],
    "due-bad-unit.yaml": [E(8, 10, "steps[0].due", "got '5x'")],
    "due-in-words.yaml": [E(8, 10, "steps[0].due", "got '30 mins': write `30m`")],
    "deadline-soon.yaml": [E(5, 11, "deadline", "got 'soon'")],
    "bad-on-timeout.yaml": [
        E(9, 17, "steps[0].on_timeout", "expected skip, fail or fallback:<step-id>, got 'escalate'")
    ],
    "due-past-deadline.yaml": [
        E(
            17,
            10,
            "steps[2].due",
            "step `verify` is due 1h15m after the run starts "
            "(look 15m + fix 30m + verify 30m), past the run deadline of 1h",
        )
    ],
    "percent-ladder-without-due.yaml": [
        E(14, 5, "steps[1]", "step `fix` has no `due`, but the SOP's escalation ladder has % entries")
    ],
    # --- the step DAG ------------------------------------------------------------------------
    "duplicate-step-ids.yaml": [E(11, 9, "steps[2].id", "duplicate step id `look`: steps[0] (line 6) has it too")],
    # its echoes ("needs itself", "has no field `cause`") wait until each id is one step's
    "duplicate-step-cascade.yaml": [E(12, 9, "steps[1].id", "duplicate step id `investigate`: steps[0] "
                                                             "(line 7) has it too; rename one of them")],
    "dangling-needs.yaml": [E(10, 19, "steps[1].needs[1]", "needs unknown step `diagnose`")],
    "misspelt-needs.yaml": [E(10, 13, "steps[1].needs[0]", "needs unknown step `diagnos`; did you mean `diagnose`? "
                                                           "(steps: diagnose, fix)")],
    "needs-cycle.yaml": [E(8, 12, "steps[0].needs", "steps form a cycle: a → b → c → a")],
    "needs-cycle-and-unknown-variable.yaml": [
        E(9, 12, "steps[0].needs", "steps form a cycle: a → b → c → a"),
        E(8, 18, "steps[0].description", "unknown variable `region`"),
    ],
    "self-need.yaml": [E(8, 13, "steps[0].needs[0]", "step `look` needs itself")],
    "fallback-unknown-step.yaml": [E(9, 17, "steps[0].on_timeout", "falls back to unknown step `page-lead`")],
    # --- names from config/ ------------------------------------------------------------------
    "unknown-owner-role.yaml": [E(4, 8, "owner", "unknown role `sre-on-call`; did you mean `sre-oncall`")],
    "assignee-near-miss.yaml": [E(7, 15, "steps[0].assignee", "unknown assignee `sara-lopes`; did you mean `sara-lopez`?")],
    "assignee-display-name.yaml": [
        E(7, 15, "steps[0].assignee", "unknown assignee `Sara Lopez`; did you mean `sara-lopez` (Sara Lopez)?"),
        E(9, 15, "steps[1].assignee", "unknown assignee `李伟`; did you mean `li-wei` (Li Wei 李伟)?"),
    ],
    "unknown-assignee.yaml": [E(7, 15, "steps[0].assignee", "unknown assignee `night-shift`")],
    "unknown-approver.yaml": [E(9, 28, "steps[0].approval.approvers[1]", "unknown role `legal-team`")],
    "unknown-ladder-target.yaml": [E(9, 20, "escalation[1].notify[1]", "unknown notify target `cto`")],
    # --- templates ---------------------------------------------------------------------------
    "when-syntax-error.yaml": [E(13, 11, "steps[1].when", "template syntax error")],
    "unknown-variable-root.yaml": [E(10, 14, "steps[0].message.title", "unknown variable `region`")],
    "unknown-input.yaml": [E(12, 14, "steps[0].message.title", "unknown input `inputs.region` (inputs: service)")],
    "misspelt-input.yaml": [E(12, 14, "steps[0].message.title", "unknown input `inputs.servce`; did you mean "
                                                                "`inputs.service`? (inputs: service)")],
    "step-field-not-in-form.yaml": [E(13, 11, "steps[1].when", "step `look` has no field `impact`")],
    "step-not-upstream.yaml": [E(12, 11, "steps[1].when", "reads step `look`, which step `fix` does not need")],
    "step-id-with-dashes.yaml": [
        E(11, 11, "steps[1].when", "step ids with dashes are written with underscores: steps.holding_statement"),
        E(11, 11, "steps[1].when", "unknown variable `statement`"),
    ],
    "unknown-filter.yaml": [E(10, 14, "steps[0].message.title", "unknown filter `uper`; did you mean `upper`?")],
    "unknown-test.yaml": [E(11, 11, "steps[0].when", "unknown test `oddd`; did you mean `odd`?")],
    # an expression that parses but fails when it is evaluated with the values its fields can have
    "when-compares-number-with-text.yaml": [
        E(13, 11, "steps[1].when", "`when` would fail whenever it is evaluated: '>' not supported between instances of "
                                   "'int' and 'str' (`steps.investigate.compensation_cny` is an integer field)")
    ],
    "when-optional-field-left-empty.yaml": [
        E(13, 11, "steps[1].when", "`when` would fail whenever `steps.investigate.compensation_cny` is left empty "
                                   "(an optional field is none then): '>' not supported between instances of 'NoneType' "
                                   "and 'int'; write `steps.investigate.compensation_cny | default(0)`")
    ],
    "check-optional-input-left-empty.yaml": [
        E(10, 12, "steps[0].check", "`check` would fail whenever a run starts without `inputs.refund_cny` (an optional "
                                   "input without a default is none then)")
    ],
    "when-enum-not-a-choice.yaml": [
        E(13, 11, "steps[1].when", "`steps.acknowledge.category` is compared with 'shipping', which is not one of its "
                                   "choices (delivery, quality, refund): `==` is never true")
    ],
    # --- triggers ----------------------------------------------------------------------------
    "metric-above-and-below.yaml": [E(9, 12, "triggers[0].below", "exactly one of above, below, change")],
    "change-without-period.yaml": [E(7, 13, "triggers[0].change", "a `change` rule needs a `period`")],
    "bad-cron.yaml": [E(6, 15, "triggers[0].schedule", "expected a 5-field cron expression")],
    "bad-cron-field.yaml": [E(6, 15, "triggers[0].schedule", "'0 25 * * MON' is not a valid cron expression")],
    "bad-timezone.yaml": [E(7, 15, "triggers[0].timezone", "unknown time zone 'Asia/Beijing'")],
    "alert-bad-regex.yaml": [E(6, 12, "triggers[0].alert", "label 'severity': bad regex '(critical|page'")],
    # --- field errors do not hide the cross-checks of the parts that did validate -------------
    "field-and-cross-check-errors.yaml": [
        E(6, 51, "inputs.region.default", "default 'asia' is not one of the enum"),
        E(10, 10, "steps[0].due", "got '5x'"),
        E(14, 15, "steps[1].assignee", "unknown assignee `night-shift`"),
        E(15, 19, "steps[1].needs[1]", "needs unknown step `diagnose`"),
    ],
    # --- what used to pass validation and fail later (issue #16) ------------------------------
    "min-above-max.yaml": [E(6, 47, "inputs.errors_per_minute.minimum", "minimum 10 is greater than maximum 5")],
    "default-below-minimum.yaml": [E(6, 63, "inputs.replicas.default", "default 1 is below the minimum 2")],
    "enum-outside-bounds.yaml": [E(9, 37, "steps[0].form.impact.enum", "enum values [9] lie outside minimum/maximum")],
    "maximum-on-string.yaml": [E(6, 35, "inputs.region.maximum", "maximum applies only to integer and number fields")],
    "minimum-nan.yaml": [E(6, 39, "inputs.latency_ms.minimum", "minimum must be a finite number, got nan")],
    "deadline-too-long.yaml": [E(5, 11, "deadline", "a duration must be at most 366d (a year and a day), got '99999999d'")],
    "wait-too-long.yaml": [E(8, 15, "steps[0].duration", "a duration must be at most 366d")],
    "ladder-percent-too-far.yaml": [
        E(10, 13, "steps[0].escalation[0].at", "100000% of step `look`'s due 1d is 1000d, longer than the longest duration 366d")
    ],
    "ladder-out-of-order.yaml": [
        E(8, 9, "escalation[1].at", "`at: 100%` is earlier than escalation[0] above it (`at: 200%`): rungs fire in "
                                    "the order written, so it would fire late, right after that one; "
                                    "list them earliest first (increasing `at`)")
    ],
    "ladder-out-of-order-mixed.yaml": [
        E(12, 13, "steps[0].escalation[1].at", "`at: 25%` is earlier than steps[0].escalation[0] above it (`at: 3h`) "
                                               "for step `look` (due 8h: 2h versus 3h after ready)")
    ],
    "ladder-after-capped-repeats.yaml": [
        E(11, 9, "escalation[2].at", "`at: 2h` is earlier than the last repeat of escalation[1] above it "
                                     "(`every: 30m`, max 4, 3h after ready)")
    ],
    "empty-due.yaml": [E(8, 9, "steps[0].due", "`due` is empty: write a duration like 2h, or remove the key")],
    "empty-keys.yaml": [
        E(5, 10, "deadline", "`deadline` is empty: write a duration like 2h, or remove the key"),
        E(9, 9, "escalation[0].max", "`max` is empty: write a number of repeats, or remove the key (it then repeats "
                                     "until the step is done)"),
        E(14, 10, "steps[0].when", "`when` is empty: write an expression, or remove the key (the step then always "
                                   "runs)"),
        E(15, 16, "steps[0].on_timeout", "`on_timeout` is empty: write skip, fail or fallback:<step-id>, or remove "
                                         "the key (the step then keeps waiting, and escalates)"),
        E(16, 16, "steps[0].escalation", "`escalation` is empty: write the step's rungs (`[]` for none), or remove "
                                         "the key (the SOP's ladder then applies)"),
        E(20, 10, "follow_ups[0].when", "`when` is empty: write an expression over the ended run, or remove the key "
                                        "(it then starts on every end but a cancel)"),
    ],
    "notify-title-too-long.yaml": [  # a title with a template is made one line and cut when it is sent
        E(10, 14, "steps[0].message.title", "a title is at most 200 characters (a responder reads it in a page), "
                                            "this one has 230: shorten it and put the rest in `body`"),
        E(16, 14, "steps[1].message.title", "a title is one line (a responder reads it in a page), this one ends in "
                                            "a line break: write it on one line and put the rest in `body`"),
    ],
    "http-url-base-from-input.yaml": [  # (steps[2] puts the input after its base: percent-encoded, passes)
        E(12, 12, "steps[0].request.url", "the URL's base address (before the first `/`, `?` or `#` the URL writes) "
                                          "reads `inputs.url`: the base goes into the request as it is (only values "
                                          "after it are percent-encoded), so a value from a run could send the call "
                                          "to another host; take the base from config (`{{ config.gateway }}/…`) and "
                                          "put run values after a `/`"),
        E(16, 12, "steps[1].request.url", "the URL's base address (before the first `/`, `?` or `#` the URL writes) "
                                          "reads `inputs.service`: the base goes into the request as it is"),
    ],
    "ladder-max-too-many.yaml": [
        E(9, 10, "escalation[1].max", "`max` is at most 50 repeats, got 1000; to repeat until the step is done, "
                                      "leave `max` out")
    ],
    "ladder-every-not-last.yaml": [
        E(8, 12, "escalation[1].every", "`every: 30m` without `max` repeats until the step is done, so the rung "
                                        "after it (escalation[2]) never fires: put it last, or give it a `max`")
    ],
    "template-private-attribute.yaml": [
        E(12, 14, "steps[0].message.title", "`_name` cannot be read: the sandbox refuses names starting with `_`")
    ],
    "template-dunder.yaml": [E(10, 14, "steps[0].message.title", "`__class__` cannot be read in a template")],
    "template-include.yaml": [E(11, 13, "steps[0].message.body", "a template cannot include, extend or import")],
    "template-divide-by-zero.yaml": [E(8, 12, "steps[0].check", "division by zero: it would fail whenever it is rendered")],
    "template-range-too-big.yaml": [E(11, 13, "steps[0].message.body", "range of 1,000,000 items: the sandbox allows at most 100,000")],
    "then-and-else.yaml": [E(10, 12, "steps[0].else[0]", "step `fix` is also in `then`: one of the two branches is always skipped")],
    "then-twice.yaml": [E(9, 17, "steps[0].then[1]", "step `fix` is listed twice in it")],
    "approval-count-too-high.yaml": [
        E(10, 14, "steps[0].approval.count", "3 distinct approvers are needed, but sre-lead has only 2 member(s)")
    ],
    "merge-key-not-mapping.yaml": [E(7, 10, "", "a merge key `<<` takes a mapping or a list of mappings")],
    "merge-key-unknown-field.yaml": [E(7, 32, "steps[0].dew", "unknown field `dew`; did you mean `due`?")],
    "http-url-not-http.yaml": [E(9, 12, "steps[0].request.url", "expected an http:// or https:// URL, got 'ftp://files.example/rotate'")],
    "http-url-no-scheme.yaml": [E(9, 12, "steps[0].request.url", "(no scheme)")],
    "schedule-missing-required-input.yaml": [
        E(8, 5, "triggers[0]", "this schedule trigger can never start a run: it gives no value for the required input(s) `service`")
    ],
    "alert-missing-required-input.yaml": [
        E(10, 5, "triggers[0]", "this alert trigger can never start a run: it gives no value for the required input(s) `region`")
    ],
    "trigger-input-wrong-type.yaml": [E(9, 20, "triggers[0].inputs.days", "input `days`: expected integer, got 'many'")],
    "cron-never-fires.yaml": [E(6, 15, "triggers[0].schedule", "'0 9 30 2 *' never fires")],
    "yaml-bad-date.yaml": [E(5, 14, "", "'2026-02-30' reads as a timestamp but is not one (day is out of range for month)")],
    "markup-in-value.yaml": [E(4, 8, "owner", "unknown role `[/]sre-oncall[bold]`")],
    "config-speed-out-of-range.yaml": [E(2, 10, "settings.speed", "less than or equal to 100000")],
    "config-link-max-age-too-long.yaml": [E(3, 19, "settings.web.link_max_age", "a duration must be at most 366d")],
    "http-expect-impossible.yaml": [E(10, 15, "steps[0].request.expect", "HTTP statuses are 100 to 599, got [999]")],
    "command-exit-impossible.yaml": [E(9, 18, "steps[0].expect_exit", "less than or equal to 255 (got 300)")],
    "config-port-out-of-range.yaml": [E(2, 32, "settings.api.port", "less than or equal to 65535 (got 80000)")],
    "yaml-bad-tagged-value.yaml": [E(5, 14, "", "'soon' reads as a timestamp but is not one; quote it to keep it as text")],
    "step-kind-is-a-list.yaml": [E(7, 11, "steps[0].kind", "unknown step kind ['human']; expected `kind` to be one of")],
    "timezone-name-too-long.yaml": [E(7, 15, "triggers[0].timezone", "unknown time zone 'Asia/xxxx")],
    # a broken input and a broken trigger: their stand-ins must not make the trigger "owe" inputs
    "broken-trigger-and-input.yaml": [
        E(6, 49, "inputs.service.default", "default 'api' is not one of the enum"),
        E(9, 15, "triggers[0].schedule", "'0 25 * * *' is not a valid cron expression"),
    ],
    # --- config (each file is a site of its own) ---------------------------------------------
    "config-missing-env.yaml": [
        E(9, 9, "people.bo-chen.contacts[0]", f"person `bo-chen`: environment variable `{MISSING_VAR}` is not set"),
    ],
    "config-primary-not-member.yaml": [
        E(8, 14, "roles.night-shift.primary", "primary 'cy-ode' is not one of the members")
    ],
    "config-backup-is-primary.yaml": [
        E(8, 13, "roles.night-shift.backup", "backup must be a different person from primary")
    ],
    "config-unknown-member.yaml": [E(6, 34, "roles.night-shift.members[2]", "unknown person `dee-park`")],
    "config-lead-not-role.yaml": [E(9, 11, "roles.night-shift.lead", "lead `ana-ruiz` is not a role in config")],
    "config-bad-timezone.yaml": [E(4, 15, "people.ana-ruiz.timezone", "unknown time zone `Europe/Barcelona`")],
    "config-calendar-unknown-country.yaml": [
        E(6, 25, "calendars.office.holidays.country", "the holidays package knows no country 'XX'")
    ],
    "config-calendar-unknown-subdiv.yaml": [
        E(6, 37, "calendars.office.holidays.subdiv", "ES has no subdivision 'Madrid'; did you mean 'MD'?")
    ],
    "config-token-bad-role.yaml": [E(8, 11, "tokens.ops-console.role", "'operator', 'responder', 'auditor' or 'monitor'")],
    "config-responder-without-person.yaml": [E(7, None, "tokens.phone.person", "a responder token needs `person`")],
    "config-role-without-backup.yaml": [
        E(6, 5, "roles.night-shift.backup", "a role needs a `backup`: a member other than the primary")
    ],
    "config-role-without-lead.yaml": [
        E(11, 5, "roles.night-shift.lead", "a role needs a `lead`: the role its late steps escalate to "
                                           "(write `lead: none` for the top of the chain)")
    ],
    "config-contact-not-apprise.yaml": [
        E(6, 9, "people.ana-ruiz.contacts[1]", "person `ana-ruiz`: contacts[1] is not an Apprise URL (expected scheme://"),
        E(9, 16, "people.bo-chen.contacts[0]",
          "person `bo-chen`: contacts[0] is not an Apprise URL after expanding ${CORPUS_BO_CHEN_MAIL}"),
    ],
}

#: folders of config files, validated together as one site (a name may be defined only once)
EXPECTED_FOLDERS: dict[str, dict[str, list[E]]] = {
    "config-duplicate-name": {
        "people.yaml": [E(3, 3, "people.bo-chen", "`bo-chen` is defined twice in people (also in ")],
    },
    "config-settings-twice": {
        "settings.yaml": [E(2, 1, "settings", "settings are defined twice (also in ")],
    },
    # a new team's file with a mistake of its own: the name it shares with the site's people is said at once too
    "config-duplicate-name-in-a-broken-file": {
        "a-new-team.yaml": [E(6, 5, "roles.night-shift.backup", "a role needs a `backup`")],
        "people.yaml": [E(3, 3, "people.bo-chen", "`bo-chen` is defined twice in people (also in ")],
    },
}


@pytest.fixture
def corpus(repo_root: Path) -> Path:
    return repo_root / "tests" / "language" / "corpus"


@pytest.fixture(autouse=True)
def _no_corpus_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CORPUS_VARS:
        monkeypatch.delenv(name, raising=False)


def validate(path: Path, repo_root: Path) -> list[SpecError]:
    errors, _, _ = validate_paths([path], repo_root / "config")
    return errors


def assert_reported(errors: list[SpecError], expected: list[E]) -> None:
    """Exactly the expected errors, each at its line (and column) with its path and message."""
    shown = "\n".join(str(e) for e in errors)
    assert len(errors) == len(expected), f"expected {len(expected)} error(s), got:\n{shown}"
    remaining = list(errors)
    for want in expected:
        match = next(
            (
                e
                for e in remaining
                if e.line == want.line
                and want.column in (None, e.column)
                and e.path == want.path
                and want.message in e.message
            ),
            None,
        )
        assert match is not None, f"no error {want} among:\n{shown}"
        remaining.remove(match)


def test_every_corpus_file_has_its_expected_errors_listed(corpus: Path) -> None:
    on_disk = {p.name for p in corpus.iterdir()}
    assert on_disk == set(EXPECTED) | set(EXPECTED_FOLDERS)
    assert len(on_disk) >= 32


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_file_is_reported_where_the_mistake_is(name: str, corpus: Path, repo_root: Path) -> None:
    errors = validate(corpus / name, repo_root)
    assert {e.file for e in errors} == {str(corpus / name)}
    assert_reported(errors, EXPECTED[name])


@pytest.mark.parametrize("folder", sorted(EXPECTED_FOLDERS))
def test_config_folder_is_validated_as_one_site(folder: str, corpus: Path, repo_root: Path) -> None:
    errors = validate(corpus / folder, repo_root)
    for file, expected in EXPECTED_FOLDERS[folder].items():
        assert_reported([e for e in errors if e.file == str(corpus / folder / file)], expected)
    assert {e.file for e in errors} <= {str(corpus / folder / f) for f in EXPECTED_FOLDERS[folder]}


def test_duplicate_name_names_the_other_file_and_line(corpus: Path, repo_root: Path) -> None:
    [error] = validate(corpus / "config-duplicate-name", repo_root)
    assert error.message.endswith(f"(also in {corpus / 'config-duplicate-name' / 'more-people.yaml'}:3)")


def test_settings_written_twice_name_the_other_file_and_line(corpus: Path, repo_root: Path) -> None:
    [error] = validate(corpus / "config-settings-twice", repo_root)
    assert error.message.endswith(f"(also in {corpus / 'config-settings-twice' / 'a-new-team.yaml'}:3): a site has "
                                  "one `settings`: keep them in one file")


def test_a_cycle_is_printed_as_the_chain_of_steps(corpus: Path, repo_root: Path) -> None:
    [error] = validate(corpus / "needs-cycle.yaml", repo_root)
    assert error.message == "steps form a cycle: a → b → c → a"


def test_a_typo_gets_a_did_you_mean_hint(corpus: Path, repo_root: Path) -> None:
    [error] = validate(corpus / "unknown-field-typo.yaml", repo_root)
    assert error.message == "unknown field `descripton`; did you mean `description`?"


def test_a_missing_variable_is_fine_once_it_is_set(
    corpus: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MISSING_VAR, "ntfy://ntfy.example/bo-chen")
    assert validate(corpus / "config-missing-env.yaml", repo_root) == []


def test_a_contact_from_the_environment_is_checked_without_showing_its_value(
    corpus: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MISSING_VAR, "s3cr3t-token")  # set, but not an Apprise URL
    [error] = validate(corpus / "config-missing-env.yaml", repo_root)
    assert error.path == "people.bo-chen.contacts[0]"
    assert f"is not an Apprise URL after expanding ${{{MISSING_VAR}}}" in error.message
    assert "s3cr3t" not in error.message


def test_the_top_of_the_chain_says_lead_none(repo_root: Path) -> None:
    docs = [read_document(path)[0] for path in sorted((repo_root / "config").glob("*.yaml"))]
    site, errors = load_site([doc for doc in docs if doc is not None], env={})
    assert site is not None, errors
    assert [name for name, role in site.roles.items() if role.lead is None] == ["ops-director"]


def test_a_field_error_does_not_invent_errors_about_the_broken_parts(corpus: Path, repo_root: Path) -> None:
    # step `fix` reads `steps.look.severity` and `inputs.region`, both of which failed to
    # validate; the stand-ins must keep those references valid
    errors = validate(corpus / "field-and-cross-check-errors.yaml", repo_root)
    assert not [e for e in errors if e.path == "steps[1].when"]


# --- through the real command ---------------------------------------------------------------


def printed(error: E, file: str) -> re.Pattern[str]:
    """The line `sop validate` prints for an error: ``file:line:col: path: message``."""
    column = r"\d+" if error.column is None else str(error.column)
    path = f"{re.escape(error.path)}(?: \\(step `[^`]+`\\))?: " if error.path else ""  # in a step: its id beside
    return re.compile(rf"^✗ {re.escape(file)}:{error.line}:{column}: {path}.*{re.escape(error.message)}", re.M)


def test_sop_validate_lists_every_corpus_error_as_file_line_col(sop) -> None:
    result = sop("validate", "tests/language/corpus", env=dict.fromkeys(CORPUS_VARS))
    assert result.returncode == 1, result.stderr
    for name, expected in EXPECTED.items():
        for error in expected:
            assert printed(error, f"tests/language/corpus/{name}").search(result.stderr), f"{name}: {error}"
    # a subfolder of config files is one site, as when it is given by name
    for folder, files in EXPECTED_FOLDERS.items():
        for file, expected in files.items():
            for error in expected:
                assert printed(error, f"tests/language/corpus/{folder}/{file}").search(result.stderr), f"{folder}: {error}"
    folder_errors = [e for files in EXPECTED_FOLDERS.values() for errors in files.values() for e in errors]
    total = sum(len(errors) for errors in EXPECTED.values()) + len(folder_errors)
    files = len(EXPECTED) + sum(len(files) for files in EXPECTED_FOLDERS.values())
    assert f"{total} error(s) in {files} file(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_sop_validate_lists_a_files_errors_top_to_bottom(sop) -> None:
    # the cycle is found before the templates are read, but the template is on an earlier line
    result = sop("validate", "tests/language/corpus/needs-cycle-and-unknown-variable.yaml")
    shown = [line for line in result.stderr.splitlines() if line.startswith("✗")]
    assert [line.split(":")[1:3] for line in shown] == [["8", "18"], ["9", "12"]]


def test_sop_validate_a_config_folder_reports_the_duplicate(sop) -> None:
    result = sop("validate", "tests/language/corpus/config-duplicate-name")
    assert result.returncode == 1
    [error] = EXPECTED_FOLDERS["config-duplicate-name"]["people.yaml"]
    assert printed(error, "tests/language/corpus/config-duplicate-name/people.yaml").search(result.stderr)


def test_sop_validate_works_from_any_folder(sop, tmp_path: Path, repo_root: Path) -> None:
    broken = repo_root / "tests" / "language" / "corpus" / "dangling-needs.yaml"
    result = sop("validate", str(broken), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{broken}:10:19: steps[1].needs[1] (step `fix`): needs unknown step `diagnose`" in result.stderr


# --- one mistake, one error: field errors neither hide nor invent cross-check errors ----------

MISTAKES = {
    "due": ("5x", "got '5x'"),
    "kind": ("email", "unknown step kind 'email'"),
    "titel": ("Typo", "unknown field `titel`; did you mean `title`?"),
}


def test_one_field_error_in_a_library_sop_gives_exactly_that_error(repo_root: Path) -> None:
    # every step of every shipped SOP broken in turn: the one field error is all the author sees,
    # though the rest of the SOP is still cross-checked
    site_docs = [read_document(path)[0] for path in sorted((repo_root / "config").glob("*.yaml"))]
    site, site_errors = load_site([doc for doc in site_docs if doc is not None], env={})
    assert site is not None, site_errors
    noisy = {}
    for path in sorted((repo_root / "sops").glob("*.yaml")):
        doc, _ = read_document(path)
        assert doc is not None
        for i in range(len(doc.data["steps"])):
            for field, (value, message) in MISTAKES.items():
                data = copy.deepcopy(doc.data)
                data["steps"][i][field] = value
                broken = Document(file=doc.file, data=data, values=doc.values, keys=doc.keys)
                errors = load_sop(broken, site)[1]
                if len(errors) != 1 or message not in errors[0].message:
                    noisy[f"{path.name} steps[{i}].{field}"] = [str(e) for e in errors]
    assert noisy == {}


def test_an_empty_variable_is_reported_as_empty(corpus: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `export CORPUS_BO_CHEN_URL=` passes as set to a shell, yet nothing could be sent to it
    monkeypatch.setenv(MISSING_VAR, "")
    [error] = validate(corpus / "config-missing-env.yaml", repo_root)
    assert (error.line, error.path) == (9, "people.bo-chen.contacts[0]")
    assert f"person `bo-chen`: environment variable `{MISSING_VAR}` is empty" in error.message


def test_a_runs_pinned_text_from_before_the_rules_on_empty_keys_and_repeats_still_loads() -> None:
    # a run started when `due:` left empty meant no due, and `max: 1000` was taken: it goes on as it began
    from flows.language.library import pinned_sop

    text = (Path(__file__).parent / "corpus" / "empty-due.yaml").read_text(encoding="utf-8") + (
        "escalation:\n  - every: 30m\n    notify: [lead]\n    max: 1000\n")
    sop = pinned_sop("0" * 64, text)
    assert sop.steps[0].due is None and sop.escalation[0].max == 1000
