"""Transparency: with hopwatch installed, asgiref and Django behave exactly as without it.

See docs/reliability.md.
"""
