"""Calls on a group's actors, with a deadline on every wait and lost actors replaced.

An actor that dies mid-stage (Ray's OOM killer, `ray.kill`, its node gone) -- or whose call loses an object it reads
or returns (ObjectLostError, OwnerDiedError: the object's node or owner died) -- is replaced by a new actor on the same
placement-group bundle (Ray re-places the bundle on another node when its node is gone), brought to the group's
current state by replaying the calls the group remembers (the last published model version), and only the calls
that were lost are sent again -- a shard's results depend only on its items and their seeds, so a retried shard
gives what the lost one would have. A rank group (a data-parallel trainer) is re-formed as a whole, since its ranks
run one collective. After `PoolSpec.retries` losses within one stage the run stops, naming the role, the actor, the
node and the cause. An error raised by the actor's own code is not retried: it would fail again.

We replace actors ourselves instead of Ray's max_restarts: a restarted actor would come back holding π_0 (its
engine rebuilt from the base model) and would refuse the round's version, and a dead rank would leave its peers
blocked in a collective; here the version is re-synced before the shard is retried and the close() paths of vLLM
engines and rank groups are the same as at shutdown.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import ray
from ray.exceptions import GetTimeoutError, NodeDiedError, ObjectLostError, RayActorError, RayTaskError, WorkerCrashedError

from orchestrator.errors import SvgapError

log = logging.getLogger(__name__)

# a lost actor as the caller sees it, and an object lost with its node or owner (ObjectLostError, OwnerDiedError: a
# shard's input or result) is retried the same way; anything else the actor raised is its own error
ACTOR_LOST = (RayActorError, NodeDiedError, WorkerCrashedError)
LOST = (*ACTOR_LOST, ObjectLostError)
# calls that set a model version: the group remembers the latest and replays it on a replacement actor
SYNC_METHODS = ("load_weights", "restore_update")


class StageError(SvgapError):
    """A stage failed on one actor; the message names role, actor index and stage."""


@dataclass
class Call:
    """One remote call sent to actor `index` (a shard, or the same call on every actor): enough to send it again."""
    index: int
    method: str
    args: tuple
    kwargs: dict
    epoch: int = 0  # which incarnation of actor `index` it was sent to
    ref: Any = None
    kept: list = field(default_factory=list)  # further returns (ray.method(num_returns=k)), left in the object store


@dataclass
class Faults:
    """What the group survived so far (cumulative): the round record reports the difference over a round."""
    retried: int = 0  # calls sent again after their actor was lost
    replaced: int = 0  # actors started in place of lost ones
    events: list[str] = field(default_factory=list)


def shard(items: Sequence[Any], parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges splitting len(items) into `parts` near-equal shards (empty ones dropped)."""
    n = len(items)
    size = math.ceil(n / parts) if n else 0
    return [(s, min(s + size, n)) for s in range(0, n, size)] if size else []


def cause(err: BaseException) -> str:
    """One line saying why a call failed (the actor's exception, or why Ray says the actor died)."""
    if isinstance(err, RayTaskError) and not isinstance(err, ACTOR_LOST):
        inner = err.cause if getattr(err, "cause", None) is not None else err
        text = str(inner).strip().splitlines()
        return f"{type(inner).__name__}: {text[-1] if text else ''}"
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    # ActorDiedError: a header, "key: value" lines (class_name, actor_id, pid, ip...), then the reason
    reasons = [ln for ln in lines[1:] if not ln.split(":", 1)[0] in
               ("class_name", "actor_id", "pid", "name", "namespace", "ip")]
    text = reasons[0] if reasons else (lines[0] if lines else "")
    text = text.split(" Some common causes include")[0]  # Ray's list of guesses follows the facts
    return f"{type(err).__name__}: {text[:300]}"


def died_on(err: BaseException) -> str | None:
    """The node IP in Ray's actor-death message, when it says."""
    for ln in str(err).splitlines():
        key, _, value = ln.strip().partition(":")
        if key == "ip" and value.strip():
            return value.strip()
    return None


class CallsMixin:
    """The call side of ActorGroup (roles/group.py supplies the actors, bundles and how to start one)."""

    spec: Any
    actors: list
    bundles: list[int]
    ranked: bool

    def _init_calls(self) -> None:
        self.epochs = [0] * len(self.actors)
        self.replay: dict[str, tuple[tuple, dict]] = {}  # calls that bring a new actor to the group's state
        self.faults = Faults()

    def _send(self, call: Call) -> Call:
        call.epoch = self.epochs[call.index]
        out = getattr(self.actors[call.index], call.method).remote(*call.args, **call.kwargs)
        call.ref, call.kept = (out[0], list(out[1:])) if isinstance(out, list) else (out, [])
        return call

    def call_all(self, stage: str, method: str, *args: Any, **kwargs: Any) -> list:
        """The same call on every actor (e.g. load new weights); returns one result per actor."""
        if method in SYNC_METHODS:
            self.remember(method, *args, **kwargs)
        return self._get([self._send(Call(i, method, args, kwargs)) for i in range(len(self.actors))], stage)

    def call_one(self, stage: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._get([self._send(Call(0, method, args, kwargs))], stage)[0]

    def submit_shards(self, method: str, items: Sequence[Any], *args: Any, **kwargs: Any) -> list[Call]:
        """Start `method(items[shard], *args)` on each actor; returns the pending calls (see `gather`)."""
        return [self._send(Call(i, method, (list(items[s:e]),) + args, kwargs))
                for i, (s, e) in enumerate(shard(items, len(self.actors)))]

    def gather(self, stage: str, calls: list[Call]) -> list:
        """Concatenate the shard results of `submit_shards`, in item order."""
        out: list = []
        for part in self._get(calls, stage):
            out.extend(part)
        return out

    def map_shards(self, stage: str, method: str, items: Sequence[Any], *args: Any, **kwargs: Any) -> list:
        return self.gather(stage, self.submit_shards(method, items, *args, **kwargs))

    def remember(self, method: str, *args: Any, **kwargs: Any) -> None:
        """A call every replacement actor gets before its first work (the group's current state); the latest call
        of each method wins."""
        self.replay.pop(method, None)
        self.replay[method] = (args, kwargs)

    # ---- waiting, with one deadline per stage (renewed when a lost call is sent again) ----
    def _get(self, calls: list[Call], stage: str) -> list:
        timeout = self.spec.timeout_s
        results: list = [None] * len(calls)
        pending = {c.ref: k for k, c in enumerate(calls)}
        deadline = time.monotonic() + timeout
        losses = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                i = calls[min(pending.values())].index
                raise StageError(f"stage '{stage}' timed out after {timeout:g}s on {self.spec.role}[{i}]"
                                 f"{self._node_text(i)}") from None
            k = pending.pop(ready[0])
            try:
                results[k] = ray.get(ready[0], timeout=timeout)
            except LOST as e:
                losses += 1
                self._lost(calls[k], e, stage, losses)
                if self.ranked:  # one collective: every rank's call goes again, on the re-formed group
                    pending = {self._send(c).ref: j for j, c in enumerate(calls)}
                    self.faults.retried += len(calls)
                else:
                    pending[self._send(calls[k]).ref] = k
                    self.faults.retried += 1
                deadline = time.monotonic() + timeout
            except GetTimeoutError:
                raise StageError(f"stage '{stage}' timed out after {timeout:g}s on "
                                 f"{self.spec.role}[{calls[k].index}]") from None
            except RayTaskError as e:
                raise StageError(f"stage '{stage}' failed on {self.spec.role}[{calls[k].index}]: "
                                 f"{cause(e)}") from None
        return results

    def _node_text(self, i: int) -> str:
        where = getattr(self, "where", None) or []
        return f" (node {where[i][:12]})" if i < len(where) and where[i] not in ("", "?") else ""

    def _lost(self, call: Call, err: BaseException, stage: str, losses: int) -> None:
        """Actor `call.index` is gone: stop after too many losses in one stage, else replace it (once per
        incarnation: other calls that were on the same actor find it replaced already)."""
        i, role = call.index, self.spec.role
        ip = died_on(err)
        node = self._node_text(i) + (f" ip {ip}" if ip else "")
        why = cause(err)
        if losses > self.spec.retries:
            raise StageError(f"stage '{stage}' lost {role}[{i}]{node} {losses} times (resources.retries="
                             f"{self.spec.retries}); last cause: {why}. The run stops here; its finished rounds "
                             f"are in the run folder") from None
        if call.epoch != self.epochs[i] and not self.ranked:
            return  # already replaced after another call found it dead
        log.warning(f"stage '{stage}': {role}[{i}]{node} lost ({why}); starting a replacement and sending its "
                    f"{'rank group' if self.ranked else 'shard'} again (loss {losses} of at most "
                    f"{self.spec.retries})")  # said out loud, not only counted
        self.faults.events.append(f"{stage}: {role}[{i}]{node}: {why}")
        if self.ranked:
            self._reform(stage)
        else:
            self._replace(i, stage)

    def _placed(self) -> bool:
        """Every bundle of this group is placed on a node that is alive (after a node is lost, Ray first marks it
        dead, then moves its bundles; an actor started before that would die with the node)."""
        from ray.util.placement_group import placement_group_table

        table = placement_group_table(self.pg)
        if table.get("state") != "CREATED":
            return False
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        where = table.get("bundles_to_node_id", {})
        return all(where.get(b) in alive for b in self.bundles)

    def _start_placed(self, indices: list[int], what: str, stage: str) -> None:
        """Start new actors at `indices` once their bundles are placed on live nodes, and wait until they are built;
        a start that loses its node is tried again until the placement deadline."""
        wait_s = min(self.spec.timeout_s, 120.0)
        deadline = time.monotonic() + wait_s
        while True:
            while not self._placed():
                if time.monotonic() > deadline:
                    raise StageError(f"stage '{stage}': cannot re-place {what} within {wait_s:g}s (a bundle of "
                                     f"{self.spec.bundle()} has no live node now; the cluster has "
                                     f"{ray.available_resources()}). The run stops here; its finished rounds are "
                                     f"in the run folder") from None
                time.sleep(0.2)
            for i in indices:
                self.actors[i] = self._start_actor(self.bundles[i])
            try:
                ray.get([self.actors[i].__ray_ready__.remote() for i in indices], timeout=self.spec.timeout_s)
                return
            except GetTimeoutError:
                raise StageError(f"stage '{stage}': the replacement for {what} did not start within "
                                 f"{self.spec.timeout_s:g}s") from None
            except LOST as e:
                if time.monotonic() > deadline:
                    raise StageError(f"stage '{stage}': the replacement for {what} did not start: "
                                     f"{cause(e)}") from None
                self._discard([self.actors[i] for i in indices])
                time.sleep(1.0)

    def _resync(self, indices: list[int], stage: str) -> None:
        """Replay the remembered calls (all of one method at once: a rank group loads collectively)."""
        for method, (args, kwargs) in self.replay.items():
            refs = [getattr(self.actors[i], method).remote(*args, **kwargs) for i in indices]
            try:
                ray.get(refs, timeout=self.spec.timeout_s)
            except (GetTimeoutError, RayTaskError, *LOST) as e:
                raise StageError(f"stage '{stage}': re-syncing the replacement {self.spec.role} actor(s) {indices} "
                                 f"({method}) failed: {cause(e)}") from None

    def _replace(self, i: int, stage: str) -> None:
        self._discard([self.actors[i]])
        self._start_placed([i], f"{self.spec.role}[{i}]", stage)
        self.epochs[i] += 1
        self.faults.replaced += 1
        self._resync([i], stage)
        self._locate()

    def _reform(self, stage: str) -> None:
        """A rank group loses all its ranks together: close the survivors, start every rank anew, join, re-sync."""
        self._discard(self.actors)
        self._start_placed(list(range(len(self.actors))), f"the {self.spec.role} rank group", stage)
        self.epochs = [e + 1 for e in self.epochs]
        self.faults.replaced += len(self.actors)
        self._form_rank_group()
        self._resync(list(range(len(self.actors))), stage)
        self._locate()

    def _discard(self, handles: list) -> None:
        """Close (a live rank leaves its process group, a vLLM engine ends its processes), then kill; bounded."""
        if getattr(self, "closable", False):
            refs = []
            for h in handles:
                try:
                    refs.append(h.close.remote())
                except Exception:  # noqa: BLE001 - a dead actor cannot be closed
                    pass
            if refs:
                ray.wait(refs, num_returns=len(refs), timeout=10)
        for h in handles:
            try:
                ray.kill(h, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _locate(self) -> None:
        try:
            self.where = self.nodes()
        except Exception:  # noqa: BLE001 - only used in messages
            self.where = []

    # provided by ActorGroup
    def _start_actor(self, bundle: int): ...

    def _form_rank_group(self) -> None: ...

    def nodes(self) -> list[str]: ...
