"""Signed sites: manifests, addresses and the publisher's store (issue 16, first part)."""
