"""Policies a node applies to what it will carry (the exit policy)."""
