"""A small example upstream service for `make run`, the docs and the end-to-end tests."""
