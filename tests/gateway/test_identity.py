"""Derived UIDs: the same inputs give the same valid UID, any other input another one."""

from __future__ import annotations

from pydicom.uid import UID

from gateway.identity import SC, SR, instance_uid, series_uid


def test_uids_are_derived_valid_and_distinct():
    first = instance_uid("1.2.3.4", "ab" * 32, SR)
    assert first == instance_uid("1.2.3.4", "ab" * 32, SR)  # a replay or a restart writes the same object
    others = {instance_uid("1.2.3.5", "ab" * 32, SR), instance_uid("1.2.3.4", "cd" * 32, SR),
              instance_uid("1.2.3.4", "ab" * 32, SC), series_uid("1.2.3.4", "ab" * 32, SR)}
    assert first not in others and len(others) == 4
    for uid in (first, *others):
        assert uid.startswith("2.25.") and len(uid) <= 64 and UID(uid).is_valid
