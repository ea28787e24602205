"""Tests of the host model."""
