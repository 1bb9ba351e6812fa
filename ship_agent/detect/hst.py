"""Multivariate device behaviour: River HalfSpaceTrees over each device's KPI vector.

A device reports all its KPIs for one poll with one timestamp; the vector is scored and
learned when the next poll starts, so the model runs once per device poll, not per sample.
Features are standardised and squashed into [0, 1] (HalfSpaceTrees needs bounded inputs);
min-max scaling would let one outlier become the new range and hide itself.
"""

from __future__ import annotations

import pickle
from typing import Any

from river import anomaly, preprocessing

from shared.policy import DetectPolicy
from ship_agent.records import AnomalyHit, MetricEvent

_SQUASH_Z = 12.0  # z = +-6 maps to the edges of [0, 1]


class _Device:
    __slots__ = (
        "scaler",
        "model",
        "ts",
        "vector",
        "tracking_id",
        "seen",
        "consecutive",
        "reported",
    )

    def __init__(self, model: Any) -> None:
        self.scaler = preprocessing.StandardScaler()
        self.model = model
        self.ts = 0.0
        self.vector: dict[str, float] = {}
        self.tracking_id = ""
        self.seen = 0
        self.consecutive = 0
        self.reported = 0.0


class HalfSpaceTreesDetector:
    """Device models are checkpointed one by one (`dump_device`), a few every second, and
    restored lazily on a device's first sample after a restart: with hundreds of devices,
    pickling or unpickling them all at once would stall the fast path for seconds."""

    name = "hst"
    state = ()

    def __init__(self, policy: DetectPolicy) -> None:
        self._p = policy.hst
        self._repeat = policy.repeat_s
        self._type_of_metric = policy.type_of_metric
        self.devices: dict[str, _Device] = {}
        self.saved: dict[str, bytes] = {}  # checkpoints not yet unpickled

    def dump_device(self, device: str) -> bytes:
        return pickle.dumps(self.devices[device], protocol=pickle.HIGHEST_PROTOCOL)

    def _new_model(self) -> Any:
        p = self._p
        return anomaly.HalfSpaceTrees(
            n_trees=p.n_trees, height=p.height, window_size=p.window_size, seed=p.seed
        )

    def observe(self, ev: MetricEvent) -> AnomalyHit | None:
        d = self.devices.get(ev.device)
        if d is None:
            blob = self.saved.pop(ev.device, None)
            d = pickle.loads(blob) if blob else _Device(self._new_model())
            self.devices[ev.device] = d
        hit = None
        if ev.ts != d.ts and d.vector:
            hit = self._score(ev.device, d)
            d.vector = {}
        d.ts = ev.ts
        d.tracking_id = ev.tracking_id
        d.vector[ev.metric] = ev.value
        return hit

    def _score(self, device: str, d: _Device) -> AnomalyHit | None:
        p = self._p
        x = d.vector
        if len(x) < p.min_features:
            return None
        d.seen += 1
        d.scaler.learn_one(x)  # type: ignore[no-untyped-call]
        z = d.scaler.transform_one(x)  # type: ignore[no-untyped-call]
        u = {k: min(1.0, max(0.0, 0.5 + v / _SQUASH_Z)) for k, v in z.items()}
        score = float(d.model.score_one(u)) if d.seen > p.warmup_vectors else 0.0
        d.model.learn_one(u)
        if score < p.threshold:
            d.consecutive = 0
            return None
        d.consecutive += 1
        if d.consecutive < p.min_consecutive or (d.reported and d.ts - d.reported < self._repeat):
            return None
        d.reported = d.ts
        return AnomalyHit(
            detector="hst",
            incident_type=self._type_of_metric(next(iter(x))).value,
            device=device,
            ts=d.ts,
            score=round(p.weight * score, 4),
            tracking_id=d.tracking_id,
            summary=f"unusual combination of {len(x)} KPIs (half-space score {score:.2f})",
            evidence={"vector": dict(x), "hst_score": round(score, 3)},
            key="vector",
        )
