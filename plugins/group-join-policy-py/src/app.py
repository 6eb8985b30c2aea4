"""group-join-policy in Python (componentize-py): the twin of plugins/group-join-policy (Rust), same
configuration, same verdicts; built by build.sh and tested through the gateway by the same tests.

A private group (OpenIM `ex` = {"private": true}) admits only the configured tiers and users; an
OpenIM error refuses the join (403 `group_check_failed`): a private group is never opened by an error.
"""
import json

from componentize_py_types import Err
from wit_world import WitWorld
from wit_world.imports import config, openim
from wit_world.imports.types import (
    Principal_User, Rejection, RequestVerdict_Proceed, RequestVerdict_Reject, ResponseVerdict_Proceed,
)


def load_settings(text):
    v = json.loads(text)
    if not isinstance(v, dict):
        raise ValueError("the configuration must be a JSON object")
    for k in v:
        if k not in ("allowed_tiers", "allowed_users"):
            raise ValueError(f"unknown field `{k}`, expected `allowed_tiers` or `allowed_users`")
    out = {}
    for k in ("allowed_tiers", "allowed_users"):
        lst = v.get(k, [])
        if not isinstance(lst, list) or not all(isinstance(x, str) for x in lst):
            raise ValueError(f"`{k}` must be a list of strings")
        out[k] = lst
    return out


def check_failed(why):
    return RequestVerdict_Reject(Rejection(403, "group_check_failed", f"the group could not be checked: {why}"))


def is_private(ex):
    try:
        v = json.loads(ex)
    except ValueError:
        return False
    return isinstance(v, dict) and v.get("private") is True


class WitWorld(WitWorld):
    def init(self, config_text):
        try:
            load_settings(config_text)
        except ValueError as e:
            raise Err(str(e))

    def on_request(self, request):
        segments = [s for s in request.path.split("/") if s]
        if len(segments) != 4 or segments[:2] != ["v1", "groups"] or segments[3] != "join":
            return check_failed("not a group join request")
        try:
            group = openim.get_group(segments[2])
        except Err as e:
            return check_failed(type(e.value).__name__)
        if group is None or not is_private(group.ex):
            return RequestVerdict_Proceed()
        try:
            settings = load_settings(config.get())
        except ValueError as e:
            return check_failed(str(e))
        p = request.principal
        if isinstance(p, Principal_User) and (
            p.value.tier in settings["allowed_tiers"] or p.value.user_id in settings["allowed_users"]
        ):
            return RequestVerdict_Proceed()
        return RequestVerdict_Reject(
            Rejection(403, "group_private", "this group is private: joining it needs an invitation")
        )

    def on_response(self, request, response):
        return ResponseVerdict_Proceed()
