"""The registry of plugin ops: the built-in pack, plugins installed through the
``onnxforge.plugins`` entry-point group, and plugins registered in this process."""

from __future__ import annotations

import importlib.metadata
import threading
from dataclasses import dataclass

from onnxforge.plugins._declaration import Op, Plugin
from onnxforge.runtime.errors import PluginError
from onnxforge.plugins.builtin import PLUGIN

ENTRY_POINT_GROUP = "onnxforge.plugins"


@dataclass
class LoadedPlugin:
    plugin: Plugin
    source: str  # "built-in", "entry point NAME = VALUE (distribution X)", "registered in this process"


class Registry:
    """Ops by (domain, name) and by case-insensitive short name. Thread-safe; discovers lazily."""

    def __init__(self):
        self._lock = threading.RLock()
        self._discovered = False
        self.plugins: dict[str, LoadedPlugin] = {}
        self.ops: dict[tuple[str, str], Op] = {}
        self.owner: dict[tuple[str, str], str] = {}
        self.problems: list[str] = []

    # -- adding -------------------------------------------------------------------------------------
    def add(self, plugin: Plugin, source: str) -> None:
        """Add ``plugin``; raise :class:`PluginError` if it clashes with a registered one."""
        if not isinstance(plugin, Plugin):
            raise PluginError(f"{source} provides {type(plugin).__name__}, not an onnxforge.plugins.Plugin")
        with self._lock:
            if plugin.name in self.plugins:
                raise PluginError(f"a plugin named {plugin.name!r} is already registered "
                                  f"({self.plugins[plugin.name].source})")
            for op in plugin.ops:
                if op.key in self.ops:
                    raise PluginError(
                        f"duplicate registration of op {op.qualified_name}: plugin {plugin.name!r} declares it, "
                        f"but plugin {self.owner[op.key]!r} already provides it"
                    )
            self.plugins[plugin.name] = LoadedPlugin(plugin, source)
            for op in plugin.ops:
                self.ops[op.key] = op
                self.owner[op.key] = plugin.name

    def remove(self, name: str) -> None:
        with self._lock:
            loaded = self.plugins.pop(name, None)
            if loaded is None:
                raise PluginError(f"no plugin named {name!r} is registered; registered: {', '.join(self.plugins)}")
            for op in loaded.plugin.ops:
                self.ops.pop(op.key, None)
                self.owner.pop(op.key, None)

    def refresh(self) -> None:
        """Forget the installed plugins and discover them again (after a pip install or uninstall);
        plugins registered in this process stay."""
        with self._lock:
            kept = [lp for lp in self.plugins.values() if lp.source == "registered in this process"]
            self.plugins, self.ops, self.owner, self.problems = {}, {}, {}, []
            self._discovered = False
            self.discover()
            for lp in kept:
                try:
                    self.add(lp.plugin, lp.source)
                except PluginError as exc:
                    self.problems.append(str(exc))

    def discover(self) -> None:
        """Load the built-in pack and every installed entry point, once. A broken or clashing
        installed plugin is recorded in ``problems`` rather than breaking every session."""
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            self.add(PLUGIN, "built-in")
            for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = getattr(getattr(ep, "dist", None), "name", None)
                source = f"entry point {ep.name} = {ep.value}" + (f" (distribution {dist})" if dist else "")
                try:
                    obj = ep.load()
                    plugin = obj() if callable(obj) and not isinstance(obj, Plugin) else obj
                    self.add(plugin, source)
                except PluginError as exc:
                    self.problems.append(f"plugin {ep.name!r} ({source}) was not loaded: {exc}")
                except Exception as exc:  # noqa: BLE001 - third-party code may raise anything
                    self.problems.append(f"plugin {ep.name!r} ({source}) failed to load: "
                                         f"{type(exc).__name__}: {exc}")

    # -- finding ------------------------------------------------------------------------------------
    def get(self, domain: str, name: str) -> Op | None:
        self.discover()
        return self.ops.get((domain, name))

    def find(self, name: str) -> list[Op]:
        """Ops whose short name (case-insensitive) or ``domain.Name`` is ``name``."""
        self.discover()
        key = name.lower()
        return [op for op in self.ops.values() if op.name.lower() == key or op.qualified_name.lower() == key]

    def plugin_of(self, op: Op) -> str:
        return self.owner.get(op.key, "?")

    def names(self) -> list[str]:
        self.discover()
        return sorted(self.plugins)


REGISTRY = Registry()
