"""STAND-IN for conda.base.context: settings from $CONDA_STANDIN_CONTEXT."""

import json
import os
import sys


class _Channel:
    """The part of conda.models.channel.Channel the plugin reads."""

    def __init__(self, base_url, token=None, auth=None):
        self.base_url = base_url
        self.token = token
        self.auth = auth


class _Context:
    def __init__(self, values):
        self.active_prefix = os.environ.get("CONDA_PREFIX")
        self.root_prefix = values.get("root_prefix", sys.prefix)
        self.pkgs_dirs = tuple(values.get("pkgs_dirs", ()))
        self.envs_dirs = tuple(values.get("envs_dirs", ()))
        # conda >= 25.9: empty when nothing is configured.
        self.channels = tuple(values.get("channels", ()))
        alias = values.get("channel_alias", {"base_url": "https://conda.anaconda.org"})
        self.channel_alias = _Channel(**alias)


def _load():
    path = os.environ.get("CONDA_STANDIN_CONTEXT")
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


context = _Context(_load())
