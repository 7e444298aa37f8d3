"""Valid by software nobody here wrote: Medplum's R4 validator (``@medplum/core``
``validateResource``, pinned in tools/fhir-validate, installed by scripts/test-services.sh)
over an export of a loaded registry — 0 errors, 0 warnings — and a control showing that it
does enforce R4's reference targets (what fhir.resources does not check)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.fhirserver.conftest import NOW
from vertebra.interop.export import export_fhir

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "tools" / "fhir-validate"


def medplum(folder: Path) -> tuple[int, dict[str, Any]]:
    """(exit code, report) of the validator over the NDJSON files of ``folder``."""
    assert (VALIDATOR / "node_modules" / "@medplum" / "core").is_dir(), (
        "run `npm ci` in tools/fhir-validate (scripts/test-services.sh: ensure_fhir_validator)"
    )
    done = subprocess.run(
        ["node", str(VALIDATOR / "validate.mjs"), str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def test_the_export_passes_medplum_with_no_error_and_no_warning(world: Any, tmp_path: Path) -> None:
    summary = export_fhir(tmp_path, now=NOW)
    code, report = medplum(tmp_path)
    assert report["errors"] == [] and report["warnings"] == []
    assert code == 0 and report["resources"] == sum(summary.counts.values()) > 1000


def test_medplum_enforces_reference_targets(tmp_path: Path) -> None:
    """The control: what Vertebra wrote before issue 15 is flagged by this validator."""
    (tmp_path / "Procedure.ndjson").write_text(
        json.dumps(
            {
                "resourceType": "Procedure",
                "id": "injection-1",
                "status": "completed",
                "subject": {"reference": "Patient/patient-1"},
                "usedReference": [{"reference": "BiologicallyDerivedProduct/product-2"}],
            }
        )
        + "\n"
    )
    code, report = medplum(tmp_path)
    assert code == 1
    (problem,) = report["errors"] + report["warnings"]
    assert "Procedure.usedReference" in problem and "BiologicallyDerivedProduct" in problem
