"""Getting the data: DANDI downloads that resume and verify (`download`, `archive`), the record of
what was fetched (`record`), and the public test-phase targets (`test_targets`)."""
