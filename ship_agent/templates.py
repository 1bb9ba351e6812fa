"""Log templates: drain3 with IP/hex/number masking, state kept across restarts.

Lines that repeat exactly (most syslog traffic) skip drain3 through a bounded cache of
message -> template, which is what lets the stage keep up with the fast path.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from shared.policy import TemplatePolicy
from ship_agent.records import LogEvent

_MASKS = [
    # quoted values (titles, names) vary in length; unmasked they split one event type into
    # templates by token count
    MaskingInstruction(r'"[^"]*"', "STR"),
    MaskingInstruction(
        r"((?<=[^A-Za-z0-9])|^)([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}((?=[^A-Za-z0-9])|$)", "MAC"
    ),
    MaskingInstruction(
        r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"
    ),
    MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(0x[a-fA-F0-9]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+(\.\d+)?)((?=[^A-Za-z0-9])|$)", "NUM"),
]
_CACHE_MAX = 50_000


@dataclass(slots=True)
class TemplateInfo:
    id: int
    template: str
    size: int
    first_seen: float
    last_seen: float


class TemplateStage:
    def __init__(self, policy: TemplatePolicy) -> None:
        config = TemplateMinerConfig()
        config.drain_sim_th = policy.sim_th
        config.drain_depth = policy.depth
        config.drain_max_clusters = policy.max_clusters
        config.masking_instructions = list(_MASKS)
        config.profiling_enabled = False
        config.parametrize_numeric_tokens = True
        self._miner = TemplateMiner(config=config)
        self._cache: dict[str, int] = {}
        self.info: dict[int, TemplateInfo] = {}
        self.changed: set[int] = set()
        self.created: list[int] = []

    def apply(self, events: list[LogEvent]) -> None:
        """Sets template_id/template on each event; records new and changed templates."""
        cache, info, miner = self._cache, self.info, self._miner
        for ev in events:
            key = ev.app + "\x00" + ev.message
            tid = cache.get(key)
            if tid is None:
                result = miner.add_log_message(ev.message)
                tid = int(result["cluster_id"])
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                # drain3 may generalise the cluster later; the id stays, the text follows.
                if result["change_type"] == "none":
                    cache[key] = tid
                known = info.get(tid)
                if known is None:
                    info[tid] = TemplateInfo(tid, result["template_mined"], 0, ev.ts, ev.ts)
                    self.created.append(tid)
                else:
                    known.template = result["template_mined"]
            t = info[tid]
            t.size += 1
            t.last_seen = ev.ts
            self.changed.add(tid)
            ev.template_id = tid
            ev.template = t.template

    def take_changes(self) -> tuple[list[TemplateInfo], list[int]]:
        changed = [self.info[t] for t in self.changed]
        created = self.created
        self.changed, self.created = set(), []
        return changed, created

    def dump_state(self) -> bytes:
        return pickle.dumps((self._miner.drain, self.info), protocol=pickle.HIGHEST_PROTOCOL)

    def load_state(self, blob: bytes) -> None:
        drain, info = pickle.loads(blob)
        self._miner.drain = drain
        self.info = info
        self._cache.clear()
