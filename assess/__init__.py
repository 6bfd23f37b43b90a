"""The assessment pipeline: outbox workers, a cheap filter, the model assessor, its rubric and
validation, and focus progression. Imports only `providers` and `db`."""
