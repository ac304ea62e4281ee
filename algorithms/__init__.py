"""The algorithm core: search space, trial history, settings schemas and the search algorithms.

This package is pure Python and knows nothing about gRPC; `services/` converts the wire messages
into the types defined here.
"""
