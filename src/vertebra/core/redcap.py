"""REDCap-compatible files of the research export: data dictionary, events, records. Pure.

Built from the research codebook (:mod:`vertebra.core.codebook`) and the released
(de-identified) tables in their codebook form (:func:`vertebra.core.codebook.for_csv`).
Documented in docs/research-exports.md.

Contracts
---------
* One longitudinal arm ("Registry", arm 1); one REDCap event per follow-up time point, named
  by the time point id, so REDCap's unique event names are ``<timepoint>_arm_1``
  (``baseline_arm_1``, ``month_3_arm_1``, ...).
* Three instruments (forms): ``patient`` (baseline event), ``followup`` (every event: scores
  and item-level answers), ``event`` (a repeating instrument in the baseline event: adverse
  events, subsequent surgeries, repeat injections).
* :func:`dictionary` gives the data dictionary rows in REDCap's exact column layout
  (:data:`DICTIONARY_COLUMNS`); REDCap variable names are unique across the project, so a few
  codebook names are renamed (:func:`field_name`).
* :func:`records` gives the records in REDCap's flat longitudinal import layout
  (``record_id, redcap_event_name, redcap_repeat_instrument, redcap_repeat_instance``, then
  every field); missing values are empty cells, booleans 1/0.
* :func:`check_dictionary` and :func:`check_records` apply REDCap's import rules and return
  the problems found (empty = importable), plus warnings for the recommendations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from vertebra.core.codebook import Column, codebook

__all__ = [
    "ARM",
    "DICTIONARY_COLUMNS",
    "FORMS",
    "RECORD_KEYS",
    "Checked",
    "arms",
    "check_dictionary",
    "check_records",
    "dictionary",
    "event_name",
    "events",
    "field_name",
    "instrument_event_mapping",
    "records",
    "repeating_instruments",
]

#: REDCap's data dictionary columns, exactly as REDCap writes and reads them.
DICTIONARY_COLUMNS = (
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
)
#: The leading columns of REDCap's flat longitudinal records with repeating instruments.
RECORD_KEYS = (
    "record_id",
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
)
ARM = 1
#: form -> (codebook table, section header).
FORMS = {
    "patient": ("patients", "Patient at treatment (de-identified)"),
    "followup": ("timepoints", "Follow-up scores and item-level answers"),
    "event": ("events", "Adverse and clinical events (repeating)"),
}
#: Codebook columns that REDCap carries elsewhere (record id, event name).
_STRUCTURAL = {("patients", "patient_id"), ("timepoints", "patient_id"),
               ("timepoints", "timepoint"), ("events", "patient_id")}  # fmt: skip
#: Codebook names that clash across tables get a REDCap name (unique in the project).
_RENAMED = {("timepoints", "status"): "tp_status"}
_EVENT_PREFIX = "ev_"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CODE = re.compile(r"^[A-Za-z0-9_]+$")
_INTEGER = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")
_DATE_YMD = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FIELD_TYPES = frozenset({"text", "notes", "dropdown", "radio", "checkbox", "yesno", "truefalse",
                         "calc", "file", "slider", "descriptive", "sql"})  # fmt: skip
VALIDATIONS = frozenset({"integer", "number", "date_ymd", "date_mdy", "date_dmy",
                         "datetime_ymd", "datetime_seconds_ymd", "time", "email", "phone",
                         "alpha_only", "zipcode"})  # fmt: skip
RESERVED = frozenset({"record_id_complete", "redcap_event_name", "redcap_repeat_instrument",
                      "redcap_repeat_instance", "redcap_data_access_group",
                      "redcap_survey_identifier", "redcap_arm"})  # fmt: skip
MAX_NAME = 100
RECOMMENDED_NAME = 26


def field_name(col: Column) -> str:
    """The REDCap variable name of a codebook column (unique across the project)."""
    if col.table == "events":
        return _EVENT_PREFIX + col.name
    return _RENAMED.get((col.table, col.name), col.name)


def event_name(timepoint: str) -> str:
    """REDCap's unique event name of a time point (event named by the time point id)."""
    return f"{timepoint}_arm_{ARM}"


def _form_columns(form: str) -> list[Column]:
    """The codebook columns a form holds, in codebook order."""
    table = FORMS[form][0]
    return [c for c in codebook().columns(table) if (table, c.name) not in _STRUCTURAL]


def _choices(col: Column) -> str:
    """``code, label | code, label`` (REDCap's choices format; no | inside a label)."""
    return " | ".join(f"{k}, {v.replace('|', '/')}" for k, v in col.values.items())


def _fmt(x: float | None) -> str:
    """A number as REDCap's min/max text ('' when absent)."""
    return "" if x is None else f"{x:g}"


def _row(col: Column, form: str, header: str) -> dict[str, str]:
    """The data dictionary row of one codebook column."""
    row = dict.fromkeys(DICTIONARY_COLUMNS, "")
    note = "; ".join(x for x in (col.units, f"missing: {col.missing}" if col.nullable else "") if x)
    row.update(
        {
            "Variable / Field Name": field_name(col),
            "Form Name": form,
            "Section Header": header,
            "Field Label": col.label,
            "Field Note": note,
            "Field Annotation": f"codebook {col.table}.{col.name}; source: {col.source}",
        }
    )
    if col.type == "boolean":
        row["Field Type"] = "yesno"
    elif col.values and not col.open:
        row["Field Type"] = "radio" if col.type == "integer" else "dropdown"
        row["Choices, Calculations, OR Slider Labels"] = _choices(col)
    else:
        row["Field Type"] = "text"
        if col.type in ("integer", "number"):
            row["Text Validation Type OR Show Slider Number"] = col.type
            row["Text Validation Min"] = _fmt(col.minimum)
            row["Text Validation Max"] = _fmt(col.maximum)
    return row


def dictionary() -> list[dict[str, str]]:
    """The data dictionary: ``record_id`` first, then the patient, followup and event forms."""
    record = dict.fromkeys(DICTIONARY_COLUMNS, "")
    record.update(
        {
            "Variable / Field Name": "record_id",
            "Form Name": "patient",
            "Field Type": "text",
            "Field Label": "Record ID (the export's patient pseudonym, patients.patient_id)",
            "Field Annotation": "codebook patients.patient_id",
        }
    )
    out = [record]
    for form, (_table, header) in FORMS.items():
        for i, col in enumerate(_form_columns(form)):
            out.append(_row(col, form, header if i == 0 else ""))
    return out


def events() -> list[dict[str, str]]:
    """REDCap events (one per time point of the codebook), with the nominal day offset."""
    tp = codebook().column("timepoints", "timepoint")
    return [
        {
            "event_name": key,
            "arm_num": str(ARM),
            "unique_event_name": event_name(key),
            "custom_event_label": label,
        }
        for key, label in tp.values.items()
    ]


def arms() -> list[dict[str, str]]:
    """The one arm."""
    return [{"arm_num": str(ARM), "name": "Registry"}]


def instrument_event_mapping() -> list[dict[str, str]]:
    """REDCap's instrument-event mapping: patient and event forms at baseline, followup at
    every event."""
    names = [e["unique_event_name"] for e in events()]
    rows = [{"arm_num": str(ARM), "unique_event_name": names[0], "form": "patient"}]
    rows += [{"arm_num": str(ARM), "unique_event_name": n, "form": "followup"} for n in names]
    rows.append({"arm_num": str(ARM), "unique_event_name": names[0], "form": "event"})
    return rows


def repeating_instruments() -> list[dict[str, str]]:
    """REDCap's repeating instruments setting: the event form repeats in the baseline event."""
    return [{"event_name": events()[0]["unique_event_name"], "form_name": "event",
             "custom_form_label": "[ev_kind] day [ev_day]"}]  # fmt: skip


# ---------------------------------------------------------------------------------- records


def _text(value: object) -> str:
    """One cell as REDCap reads it: empty when missing, integers without '.0'."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.10g}" if not value.is_integer() else str(int(value))
    return str(value)


def records(tables: Mapping[str, pd.DataFrame]) -> list[dict[str, str]]:
    """The flat longitudinal records of released tables in codebook form (for_csv frames):
    one row per patient at baseline, per time point in its event, per event as a repeat."""
    fields = [r["Variable / Field Name"] for r in dictionary()]
    blank = dict.fromkeys([*RECORD_KEYS, *fields[1:]], "")
    baseline = events()[0]["unique_event_name"]
    out: list[dict[str, str]] = []
    by_patient: dict[str, list[dict[str, str]]] = {}
    # REDCap holds one row per record and event (repeats apart): the baseline follow-up
    # answers share the patient form's row.
    by_event: dict[tuple[str, str], dict[str, str]] = {}

    def row_for(pid: object, event: str) -> dict[str, str]:
        key = (_text(pid), event)
        if key not in by_event:
            by_event[key] = {**blank, "record_id": key[0], "redcap_event_name": event}
            by_patient.setdefault(key[0], []).append(by_event[key])
        return by_event[key]

    def add(pid: object, row: dict[str, str]) -> None:
        by_patient.setdefault(_text(pid), []).append(row)

    for rec in tables["patients"].to_dict("records"):
        row = row_for(rec["patient_id"], baseline)
        row.update({field_name(c): _text(rec[c.name]) for c in _form_columns("patient")})
    for rec in tables["timepoints"].to_dict("records"):
        row = row_for(rec["patient_id"], event_name(str(rec["timepoint"])))
        row.update({field_name(c): _text(rec[c.name]) for c in _form_columns("followup")})
    instance: dict[str, int] = {}
    for rec in tables["events"].to_dict("records"):
        pid = _text(rec["patient_id"])
        instance[pid] = instance.get(pid, 0) + 1
        row = {**blank, "record_id": pid, "redcap_event_name": baseline,
               "redcap_repeat_instrument": "event", "redcap_repeat_instance": str(instance[pid])}  # fmt: skip
        row.update({field_name(c): _text(rec[c.name]) for c in _form_columns("event")})
        add(rec["patient_id"], row)
    for pid in sorted(by_patient, key=lambda p: (len(p), p)):
        out.extend(by_patient[pid])
    return out


# ----------------------------------------------------------------------------------- checks


@dataclass
class Checked:
    """Problems (the file would be refused or misread) and warnings (recommendations)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _check_choices(name: str, text: str, out: Checked) -> None:
    """``code, label | code, label``: codes letters, digits, underscore; unique; labels set."""
    codes: list[str] = []
    for part in text.split("|"):
        code, sep, label = part.strip().partition(",")
        if not sep or not label.strip() or not _CODE.fullmatch(code.strip()):
            out.problems.append(f"{name}: choice {part.strip()!r} is not 'code, label'")
        codes.append(code.strip())
    if len(set(codes)) != len(codes):
        out.problems.append(f"{name}: duplicate choice codes")


def check_dictionary(rows: Sequence[Mapping[str, str]]) -> Checked:
    """REDCap's data dictionary rules (see docs/research-exports.md for the list)."""
    out = Checked()
    if not rows:
        out.problems.append("empty dictionary")
        return out
    if any(tuple(r) != DICTIONARY_COLUMNS for r in rows):
        out.problems.append("columns are not REDCap's data dictionary columns in order")
        return out
    if rows[0]["Variable / Field Name"] != "record_id":
        out.problems.append("the first field must be the record id (record_id)")
    names = [r["Variable / Field Name"] for r in rows]
    forms_seen: list[str] = []
    complete = {f"{r['Form Name']}_complete" for r in rows}
    for r, name in zip(rows, names, strict=True):
        form, ftype = r["Form Name"], r["Field Type"]
        if not _NAME.fullmatch(name) or "___" in name or len(name) > MAX_NAME:
            out.problems.append(f"{name!r}: not a valid variable name (a-z0-9_, <= 100)")
        elif len(name) > RECOMMENDED_NAME:
            out.warnings.append(f"{name}: longer than the recommended {RECOMMENDED_NAME}")
        if name in RESERVED or name in complete:
            out.problems.append(f"{name}: a reserved REDCap name")
        if not _NAME.fullmatch(form):
            out.problems.append(f"{name}: form name {form!r} is not a-z0-9_")
        if not forms_seen or forms_seen[-1] != form:
            if form in forms_seen:
                out.problems.append(f"{name}: form {form} is not contiguous")
            forms_seen.append(form)
        if ftype not in FIELD_TYPES:
            out.problems.append(f"{name}: field type {ftype!r} unknown")
        choices = r["Choices, Calculations, OR Slider Labels"]
        if ftype in ("dropdown", "radio", "checkbox"):
            _check_choices(name, choices, out)
        elif ftype in ("yesno", "truefalse", "text", "notes") and choices:
            out.problems.append(f"{name}: {ftype} fields take no choices")
        if not r["Field Label"].strip() and ftype != "descriptive":
            out.problems.append(f"{name}: no field label")
        _check_validation(name, r, out)
        if r["Identifier?"] not in ("", "y") or r["Required Field?"] not in ("", "y"):
            out.problems.append(f"{name}: Identifier?/Required Field? must be 'y' or empty")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        out.problems.append(f"duplicate variable names: {dup}")
    return out


def _check_validation(name: str, row: Mapping[str, str], out: Checked) -> None:
    """Validation type only on text fields, known, with min/max of its kind and min <= max."""
    kind = row["Text Validation Type OR Show Slider Number"]
    low, high = row["Text Validation Min"], row["Text Validation Max"]
    if not kind:
        if (low or high) and row["Field Type"] != "slider":
            out.problems.append(f"{name}: min/max without a validation type")
        return
    if row["Field Type"] != "text" or kind not in VALIDATIONS:
        out.problems.append(f"{name}: validation {kind!r} not allowed here")
        return
    pattern = _DATE_YMD if kind == "date_ymd" else _NUMBER
    for bound in (low, high):
        if bound and not pattern.fullmatch(bound):
            out.problems.append(f"{name}: bound {bound!r} is not a {kind}")
    if kind in ("integer", "number") and low and high and float(low) > float(high):
        out.problems.append(f"{name}: min > max")


def check_records(
    rows: Sequence[Mapping[str, str]],
    dictionary_rows: Sequence[Mapping[str, str]],
    mapping: Iterable[Mapping[str, str]],
    repeating: Iterable[Mapping[str, str]],
) -> Checked:
    """REDCap's import rules for flat longitudinal records against their dictionary."""
    out = Checked()
    spec = {r["Variable / Field Name"]: r for r in dictionary_rows}
    forms_of_event: dict[str, set[str]] = {}
    for m in mapping:
        forms_of_event.setdefault(m["unique_event_name"], set()).add(m["form"])
    repeats = {(r["event_name"], r["form_name"]) for r in repeating}
    header = list(rows[0]) if rows else []
    if header[: len(RECORD_KEYS)] != list(RECORD_KEYS):
        out.problems.append(f"the first columns must be {RECORD_KEYS}")
        return out
    unknown = [c for c in header[len(RECORD_KEYS) :] if c not in spec]
    if unknown:
        out.problems.append(f"columns not in the dictionary: {unknown}")
    seen: set[tuple[str, str, str, str]] = set()
    for n, row in enumerate(rows, start=2):
        event, form = row["redcap_event_name"], row["redcap_repeat_instrument"]
        if event not in forms_of_event:
            out.problems.append(f"row {n}: unknown event {event!r}")
            continue
        if not row["record_id"]:
            out.problems.append(f"row {n}: no record_id")
        key = (row["record_id"], event, form, row["redcap_repeat_instance"])
        if key in seen:
            out.problems.append(f"row {n}: duplicate record/event/instance {key}")
        seen.add(key)
        if form and ((event, form) not in repeats or not _INTEGER.fullmatch(key[3])):
            out.problems.append(f"row {n}: {form!r} does not repeat in {event}")
        for name, value in row.items():
            if name in RECORD_KEYS or name == "record_id" or value == "" or name not in spec:
                continue
            field_form = spec[name]["Form Name"]
            repeating_form = (event, field_form) in repeats
            if (
                field_form not in forms_of_event[event]
                or (form and field_form != form)
                or (repeating_form and not form)
            ):
                out.problems.append(f"row {n}: {name} (form {field_form}) not in {event}/{form}")
            problem = _value_problem(spec[name], value)
            if problem:
                out.problems.append(f"row {n}: {name}={value!r}: {problem}")
    return out


def _value_problem(spec: Mapping[str, str], value: str) -> str:
    """Why REDCap would refuse ``value`` for the field ``spec`` ('' when it accepts it)."""
    ftype = spec["Field Type"]
    if ftype in ("yesno", "truefalse"):
        return "" if value in ("0", "1") else "not 0 or 1"
    if ftype in ("dropdown", "radio"):
        codes = [p.split(",", 1)[0].strip() for p in spec["Choices, Calculations, OR Slider Labels"].split("|")]  # fmt: skip
        return "" if value in codes else "not one of the choices"
    kind = spec["Text Validation Type OR Show Slider Number"]
    if kind == "integer" and not _INTEGER.fullmatch(value):
        return "not an integer"
    if kind == "number" and not _NUMBER.fullmatch(value):
        return "not a number"
    if kind == "date_ymd" and not _DATE_YMD.fullmatch(value):
        return "not a Y-M-D date"
    if kind in ("integer", "number"):
        low, high = spec["Text Validation Min"], spec["Text Validation Max"]
        if (low and float(value) < float(low)) or (high and float(value) > float(high)):
            return "out of range"
    return ""
