"""Unit tests of {{name}}'s policy (src/logic.py), run by `python3 -m unittest`."""
import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import logic  # noqa: E402


def body(v):
    return (v if isinstance(v, str) else json.dumps(v)).encode()


class Policy(unittest.TestCase):
    def test_rejects_a_text_with_a_denied_word_in_any_case(self):
        verdict = logic.decide(body({"text": "cheap SPAM, click here"}), {"deny": ["spam", "scam"]})
        self.assertEqual(verdict[:2], (403, "denied_word"))

    def test_lets_everything_else_through(self):
        settings = {"deny": ["spam"]}
        self.assertIsNone(logic.decide(body({"text": "hello bob"}), settings))
        self.assertIsNone(logic.decide(body({"title": "spam"}), settings), "only `text` is checked")
        self.assertIsNone(logic.decide(body({"text": 42}), settings))
        self.assertIsNone(logic.decide(body("not json"), settings))

    def test_checks_the_configuration(self):
        self.assertEqual(logic.parse_settings('{"deny": ["spam"]}'), {"deny": ["spam"]})
        for bad in ['{"deny": []}', '{"deny": [""]}', '{"deny": ["spam"], "extra": 1}', "{}", "not json"]:
            with self.assertRaises(ValueError, msg=bad):
                logic.parse_settings(bad)


if __name__ == "__main__":
    unittest.main()
