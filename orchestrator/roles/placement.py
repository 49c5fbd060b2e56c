"""Where each actor landed: per role, per actor, the node (short id, address) and the custom resources that node
advertises -- so a run on a shaped cluster shows generation on the inference nodes and training on the training
nodes (resources.<role>.custom), and a run on one machine shows that too."""
from __future__ import annotations

from typing import Iterable

BUILTIN = ("CPU", "GPU", "memory", "object_store_memory")


def _custom(resources: dict) -> dict[str, float]:
    return {k: v for k, v in resources.items()
            if k not in BUILTIN and not k.startswith("node:") and not k.startswith("accelerator_type:")}


def report(groups: Iterable) -> dict[str, list[dict]]:
    """{role: [{actor, node_id, address, custom}, ...]} from the groups' placement groups and Ray's node table."""
    import ray

    nodes = {n["NodeID"]: n for n in ray.nodes()}
    out: dict[str, list[dict]] = {}
    for g in groups:
        rows = []
        for i, node_id in enumerate(g.nodes()):
            n = nodes.get(node_id, {})
            rows.append({"actor": i, "node_id": node_id, "address": n.get("NodeManagerAddress", "?"),
                         "custom": _custom(n.get("Resources", {}))})
        out[g.spec.role] = rows
    return out


def lines(rep: dict[str, list[dict]]) -> list[str]:
    """One line per role: `placement generation: [0] node 3f2a1b9c (192.0.2.2; gen_node=4), [1] ...`."""
    def node(r: dict) -> str:
        custom = ", ".join(f"{k}={v:g}" for k, v in sorted(r["custom"].items()))
        return f"[{r['actor']}] node {r['node_id'][:8]} ({r['address']}{'; ' + custom if custom else ''})"

    return [f"placement {role}: " + ", ".join(node(r) for r in rows) for role, rows in rep.items()]
