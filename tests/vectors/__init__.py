"""Test vectors and small from-the-spec reference implementations."""
