"""What a worker runs: a model's own plan in *sum form* (driver side, no Dask here).

A compiled model reduces each loss with ``masked_mean`` = ``sum(score*m*w) / sum(m)``
(or ``weighted_mean`` = ``sum(score*w) / count`` without a mask). Over a global batch
split into shards, the mean of the whole batch is ``sum_i num_i / sum_i n_i``: it needs
each shard's numerator ``num_i`` and kept count ``n_i``, not its mean. A
:class:`ShardProgram` is the model's ``train`` / ``evaluate`` / ``predict`` plan with
three changes, made on the plan's steps (the compiled graph is not touched):

* each ``masked_mean`` / ``weighted_mean`` step runs :class:`SumForm` instead: two
  outputs, the numerator and the count (both float64, from the same kernel);
* the backward step of each loss runs :class:`SumFormVJP`: ``d num / d score = g * m * w``
  (no division by the shard's count);
* the seed of each loss's backward pass (the constant ``w_k`` autodiff wrote) becomes a
  value the driver feeds at every step.

With seeds ``c_k`` a shard's gradient is ``sum_k c_k * d num_k / d weights``. One loss:
the seed is its loss weight and the driver divides the added gradients by the global
count. Several losses: the driver counts each loss's kept positions over the global
batch first (:meth:`ShardProgram.global_counts`, the mask part of the graph only) and
feeds ``w_k / N_k``, so one backward pass gives the exact gradient of the total loss.
Counts never depend on the weights' values through a gradient, so dividing after the
backward pass is exact, not an approximation.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from graphmask.kernels import losses as K
from graphmask.ops.base import Op
from graphmask.ops.reductions import layout
from graphmask.runtime import run

REDUCTIONS = ("masked_mean", "weighted_mean")


class SumForm(Op):
    """A loss reduction in sum form: outputs ``(sum(score*m*w), count)`` in float64.

    ``count`` is the number of kept positions for ``masked_mean`` and the number of
    scores for ``weighted_mean``: the denominators of the means they replace.
    """

    name = "sum_form"

    def forward(self, attrs, inputs):
        s2, m2, w2 = layout(attrs["of"], inputs)
        if attrs["of"] == "masked_mean":
            tot, cnt, _ = K.masked_sums(s2, m2, w2)
        else:
            tot, _ = K.weighted_sums(s2, w2)
            cnt = float(s2.size)
        return [np.asarray(tot, np.float64), np.asarray(cnt, np.float64)]


class SumFormVJP(Op):
    """The backward step of :class:`SumForm`: ``d score = g * m * w``."""

    name = "sum_form_vjp"

    def forward(self, attrs, inputs):
        ins = {p[3:]: v for p, v in inputs.items() if p.startswith("in:")}
        s2, m2, w2 = layout(attrs["op"], ins)
        g = inputs.get("grad:0")
        ds = np.empty_like(s2)
        K.scaled_weight_grad(m2, w2, 0.0 if g is None else float(g), ds)
        return [ds.reshape(ins["score"].shape)]


SUM_FORM, SUM_FORM_VJP = SumForm(), SumFormVJP()


@dataclass
class ShardProgram:
    """A plan in sum form and how to read its results (pickled once to every worker).

    Fetch layout of ``plan``: ``train``/``evaluate``: per loss (numerator, count), per
    metric (total, count), then (``train``) one gradient per name in ``grad_names``;
    ``predict``: the model's outputs.
    """

    kind: str
    plan: object
    n_losses: int = 0
    n_metrics: int = 0
    grad_names: list = field(default_factory=list)
    seed_nodes: list = field(default_factory=list)   # per loss: node fed with its seed
    seed_dtypes: list = field(default_factory=list)
    sparse: dict = field(default_factory=dict)         # grads sent as rows: name -> shape
    random: bool = False                               # the plan draws random numbers
    loss_dtypes: list = field(default_factory=list)    # driver side: the model's loss dtype
    loss_weights: list = field(default_factory=list)
    count_plan: object = None                          # driver side: denominators
    masked: list = field(default_factory=list)         # per loss: a masked_mean?


def graph_of(model, kind: str):
    """The compiled graph the model's own ``kind`` plan was scheduled from."""
    if kind != "train" and model.compiled and getattr(model, "_infer_graph", None) is not None:
        return model._infer_graph
    return model.graph


def _embedding_tables(g, names) -> dict:
    """Weights read only as an Embedding's table (name -> shape): their gradients are
    zero outside the rows of the ids a batch looks up."""
    out = {}
    for nid in g.nodes_by_op("variable"):
        var = g.node(nid)["attrs"]["var"]
        if var not in names:
            continue
        uses = [(g.node(dst)["op"], port) for dst, port, _ in g.consumers(nid)
                if g.node(dst)["phase"] == "forward"]
        if uses and all(u == ("embedding", "embeddings") for u in uses):
            out[var] = tuple(g.node(nid)["attrs"]["shape"])
    return out


def build(model, kind: str) -> ShardProgram:
    """The sum form of ``model``'s ``kind`` plan (``train``, ``evaluate`` or ``predict``)."""
    from graphmask import passes

    base = model._plan(kind)
    if kind == "predict":
        return ShardProgram(kind, base, random=_draws(base))
    g = graph_of(model, kind)
    losses = list(g.meta["losses"])
    by_node = {st.node: st for st in base.steps}
    seeds, steps = {}, []
    for st in base.steps:
        if st.op.name in REDUCTIONS:
            st = replace(st, op=SUM_FORM, attrs={**st.attrs, "of": st.op.name})
        elif st.op.name == "vjp" and st.attrs["op"] in REDUCTIONS:
            seed = st.ports["grad:0"][0]
            seeds[st.attrs["node"]] = seed
            st = replace(st, op=SUM_FORM_VJP)
        steps.append(st)
    seed_nodes = [seeds.get(lid) for lid in losses] if kind == "train" else []
    fed = {s for s in seed_nodes if s is not None}
    steps = [st for st in steps if st.node not in fed]
    fetches = []
    for node, out in base.fetches:
        fetches.append((node, out))
        if node in losses and out == 0:
            fetches.append((node, 1))  # the count, right after the numerator
    plan = replace(base, steps=steps, fetches=fetches, feeds=[*base.feeds, *sorted(fed)])
    dtypes = [g.spec(lid).dtype for lid in losses]
    # per loss: its mask (masked_mean) or its score-shaped sample weight (weighted_mean)
    masked = [by_node[lid].op.name == "masked_mean" for lid in losses]
    denominators = [by_node[lid].ports["mask" if m else "weight"]
                    for lid, m in zip(losses, masked)]
    count_plan = passes.make_plan(g, denominators) if len(losses) > 1 else None
    names = list(getattr(model, "_grad_names", [])) if kind == "train" else []
    return ShardProgram(
        kind, plan, n_losses=len(losses), n_metrics=len(g.meta["metrics"]),
        grad_names=names, seed_nodes=seed_nodes,
        seed_dtypes=[by_node[s].attrs["dtype"] if s is not None else "float64"
                     for s in seed_nodes],
        sparse=_embedding_tables(g, set(names)), random=_draws(plan), loss_dtypes=dtypes,
        loss_weights=list(g.meta["loss_weights"]), count_plan=count_plan, masked=masked)


def _draws(plan) -> bool:
    return any(st.op.name == "dropout" and st.attrs.get("_training") for st in plan.steps)


def global_counts(program: ShardProgram, feeds: dict, variables: dict) -> list[float]:
    """Each loss's denominator over the global batch (for several losses).

    ``masked_mean`` losses count their kept positions (the count plan runs only the part
    of the graph the masks depend on, on the driver); ``weighted_mean`` losses count their
    scores (the size of their score-shaped sample weight).
    """
    values = run(program.count_plan, feeds, variables)
    return [float(np.count_nonzero(v)) if m else float(v.size)
            for v, m in zip(values, program.masked)]
