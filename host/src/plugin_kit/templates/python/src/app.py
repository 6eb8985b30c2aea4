"""The glue of {{name}}: imgate's contract (wit/world.wit) on top of the policy in logic.py.
Each hook call runs in a fresh instance: keep nothing in module globals between calls.
"""
from componentize_py_types import Err
from wit_world import WitWorld
from wit_world.imports import config
from wit_world.imports.types import Rejection, RequestVerdict_Proceed, RequestVerdict_Reject, ResponseVerdict_Proceed

import logic


class WitWorld(WitWorld):
    def init(self, config_text):
        """Runs when imgate loads a route's configuration: Err refuses it (the message is shown)."""
        try:
            logic.parse_settings(config_text)
        except ValueError as e:
            raise Err(str(e))

    def on_request(self, request):
        try:
            settings = logic.parse_settings(config.get())
        except ValueError as e:
            # `init` accepted this configuration, so this does not happen; if it did, refuse.
            return RequestVerdict_Reject(Rejection(403, "policy_misconfigured", str(e)))
        rejection = logic.decide(request.body, settings)
        if rejection is None:
            return RequestVerdict_Proceed()
        return RequestVerdict_Reject(Rejection(*rejection))

    def on_response(self, request, response):
        return ResponseVerdict_Proceed()
