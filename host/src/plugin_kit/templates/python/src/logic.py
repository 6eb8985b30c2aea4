"""The policy of {{name}} as plain functions: no imgate import here, so `python3 -m unittest` runs
them as they are (tests/test_logic.py). src/app.py connects them to imgate's contract.
"""
import json

REJECTION = (403, "denied_word", "the text contains a word this conversation does not allow")


def parse_settings(text):
    """Parses and checks the route's configuration (a JSON text): {"deny": ["word", ...]}, unknown
    keys refused. Raises ValueError saying what is wrong."""
    try:
        v = json.loads(text)
    except ValueError as e:
        raise ValueError(f"the configuration is not JSON: {e}") from None
    if not isinstance(v, dict):
        raise ValueError("the configuration must be a JSON object")
    for k in v:
        if k != "deny":
            raise ValueError(f"unknown field `{k}`, expected `deny`")
    deny = v.get("deny")
    if not isinstance(deny, list) or not all(isinstance(w, str) for w in deny):
        raise ValueError("`deny` must be a list of strings")
    if not deny:
        raise ValueError("`deny` must list at least one word")
    for w in deny:
        if not 1 <= len(w) <= 64:
            raise ValueError(f"each word must be 1-64 characters, not {w!r}")
    return {"deny": deny}


def denied_word(text, deny):
    """The first denied word `text` contains, compared case-insensitively; None when none."""
    lower = text.lower()
    return next((w for w in deny if w.lower() in lower), None)


def decide(body, settings):
    """The verdict on a request body (bytes): (status, code, message) to reject it when its `text`
    holds a denied word, None to let it through. A body that is not a JSON object, or has no string
    `text`, goes on (the route refuses malformed bodies itself)."""
    try:
        v = json.loads(body)
    except ValueError:
        return None
    if not isinstance(v, dict) or not isinstance(v.get("text"), str):
        return None
    if denied_word(v["text"], settings["deny"]) is None:
        return None
    return REJECTION
