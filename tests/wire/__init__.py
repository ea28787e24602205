"""Tests of the wire format and its readers."""
