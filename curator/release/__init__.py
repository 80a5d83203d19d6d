"""Certified releases: write-once storage, verification, listing."""
