"""Interoperability, the Django side: FHIR bulk export and import through the registry.

Not a Django app (it has no models): it reads with selectors of its own
(:mod:`vertebra.interop.selectors`), maps with the pure core (:mod:`vertebra.core.fhir`) and
writes only through the registry and follow-up services (:mod:`vertebra.interop.importer`).
"""
