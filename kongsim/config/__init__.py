"""Configuration: kong.yml into frozen entities, and plugin configs checked against schemas.

Imports nothing of kongsim but :mod:`kongsim.errors`; everything else of kongsim may import it.
"""
