"""OONI measurements in: OONI's published Web Connectivity data read as curfew measurements.

- `read`: the files as OONI publishes them (JSON lines, .jsonl.gz, one JSON document, stdin),
  streamed one measurement at a time, a bad line reported with its number and skipped;
- `parse`: one OONI measurement (classic 0.4 or LTE 0.5 test keys) to a curfew `Measurement`
  and its control (the test helper's answer) as a second `Measurement`;
- `judge`: curfew's own verdict on it, with the redirect chain and the server-side false
  positives OONI's classic analysis trips on;
- `importer`: all of it into a store, idempotently, in constant memory.

docs/ooni.md says what maps to what.
"""
