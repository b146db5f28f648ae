"""Web and API hygiene: what every answer carries, who may call, what the metrics show."""

from __future__ import annotations

from service.config import Settings


def test_only_a_leading_hash_makes_a_key_file_line_a_comment(tmp_path, bundled_model):
    keys = tmp_path / "keys"
    keys.write_text("# operators' keys\n  Tr0ub4dor#3xYz-long-key  \n\n   # an indented comment\nsecond-key\n")
    settings = Settings(model_path=bundled_model, api_keys_file=keys)
    assert [key.get_secret_value() for key in settings.all_api_keys()] == ["Tr0ub4dor#3xYz-long-key", "second-key"]
