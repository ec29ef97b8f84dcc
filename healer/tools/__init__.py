"""Helpers the tests and the benchmark share: a real server process, packaged tissue images."""
