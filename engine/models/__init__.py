"""The models Loupe runs, each behind the small protocol in `base`."""
