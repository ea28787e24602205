"""Tests of the host daemon."""
