"""FHIR Bulk Data ``$export`` (HL7 Bulk Data IG v2) and SMART Backend Services for system
clients (docs/fhir-bulk.md, ADR 0021)."""
