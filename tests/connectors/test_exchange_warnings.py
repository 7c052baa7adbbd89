"""Exchange's ``@adminapi.warnings``: read from any casing and shape, so an unconfirmed unblock is noticed."""

from __future__ import annotations

from mailunblock.connectors.exchange import warnings


def test_warnings_are_read_whatever_the_key_case_and_shape() -> None:
    assert warnings({"@adminapi.warnings": ["may still be restricted"], "value": []}) == ("may still be restricted",)
    assert warnings({"@AdminAPI.Warnings": "one"}) == ("one",)
    assert warnings({"@adminapi.warnings": [{"Message": "as object"}]}) == ("as object",)
    assert warnings({"value": []}) == ()
    assert warnings(None) == ()
