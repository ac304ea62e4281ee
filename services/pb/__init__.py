"""Stubs generated from proto/api.proto by proto/generate.py. Do not edit."""
