"""Tests on 8 simulated CPU devices. They run only in a process started with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/test_sharding.py starts one), so that
the rest of the suite keeps seeing one device; anywhere else this folder is not even imported."""
import os

EIGHT = "--xla_force_host_platform_device_count=8"

if EIGHT not in os.environ.get("XLA_FLAGS", ""):
    collect_ignore_glob = ["test_*.py"]
else:
    import jax

    assert jax.device_count() == 8, jax.devices()
