"""The ground floor every part stands on: the shared vocabulary (typed records, device
kinds), geography, the registry and the paths configuration resolves against.

It imports no part of citywatch; every part may import it.
"""
