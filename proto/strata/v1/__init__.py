"""`strata.v1`: code generated from cache.proto by `make proto`. Never edit the *_pb2* files."""
