"""Stamp data layer: schema contract, npz codec, tier reading (local and s3://), packed format."""
