"""Tests of jaxface.synth."""
