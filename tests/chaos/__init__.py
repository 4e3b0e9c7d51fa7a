"""Tests of the chaos drill's parts: the storage fault proxy."""
