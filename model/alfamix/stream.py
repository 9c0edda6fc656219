"""The queue for a live annotation stream: ALFA-Mix whose diverse batch survives the rounds.

Parvaneh et al. (CVPR 2022, arXiv:2203.07034) label a whole batch, retrain and query again.
In Label Studio a round follows nearly every label and annotators take the head of the queue,
so a batch redrawn every round only ever has its first item labeled and its diversity is lost.
Here a batch, once drawn, keeps its place at the head across rounds until its members are
labeled or, for an ALFA-Mix batch, it goes *stale*: there are candidates now and none of its
remaining members is among them (the model has become consistent wherever the batch was
drawn). A diversity batch runs to its end. On the tuning split (docs/benchmarks.md, issue 11)
this rule cost 0.3 points of mean accuracy against never redrawing, and redrawing earlier, once
fewer than a quarter, a half or three quarters of the remaining members were still candidates,
cost 0.3, 0.5 and 0.8: it is there for long batches on a model that has moved on.

The head of the queue is, in this order of precedence:

- the kept batch;
- a new ALFA-Mix batch: k-means representatives of the candidates, as in the paper;
- a diversity batch when there is nothing to be inconsistent about (no label yet, one labeled
  class, whose loss gradient is exactly zero, or no candidate): k-means representatives of
  the whole pool. This is also the cold-start queue, pushed before the first label.

A new batch is ordered farthest-first from the labeled items, so any prefix of it is diverse
and a team's random pick among the first few tasks loses little. With an audit share, a new batch
holds tasks drawn uniformly at random in evenly spaced slots (and keeps those of the batch it
replaces): their pre-label correctness gives an unbiased estimate of the accuracy on the pool.

The rest of the queue ranks items by the first cap that flips them over the whole cap
schedule, then by the number of distinct anchors that flip them there, then by margin, with
seeded random ties; items are then taken in turn from the regions of the batch members
(nearest member), so the tail stays diverse too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from model.alfamix.candidates import search_closed_form
from model.alfamix.learned import search_learned
from model.alfamix.mixing import cap_schedule, compute_anchors, distinct_anchors
from model.alfamix.query import DEFAULT_CAP_STEP, QueryConfig, validate_pool, validate_query_inputs
from model.alfamix.selection import KMeansConfig, select_diverse, subsample
from model.errors import ModelInputError
from model.head import mixing_space, predict_proba, project
from model.strategies import BASELINES, baseline_order

STRATEGIES = ("alfamix", *BASELINES)


@dataclass(frozen=True)
class StreamConfig:
    """How the stream queue is built. ``query`` holds ALFA-Mix's own settings."""

    strategy: str = "alfamix"
    n_query: int = 100  # size of a new batch
    audit_fraction: float = 0.0  # share of a new batch's slots drawn at random
    query: QueryConfig = field(default_factory=QueryConfig)


@dataclass(frozen=True)
class CarriedBatch:
    """The previous round's batch, as indices into this round's pool (labeled members removed)."""

    members: np.ndarray  # (b,) int64, in queue order
    audit: np.ndarray  # (a,) int64, the members drawn at random for the audit
    kind: str = "alfamix"  # "alfamix" or "diversity"; a diversity batch never goes stale

    @classmethod
    def empty(cls) -> CarriedBatch:
        none = np.zeros(0, dtype=np.int64)
        return cls(members=none, audit=none)


@dataclass(frozen=True)
class StreamQueue:
    """A queue over the N unlabeled items and the batch at its head."""

    order: np.ndarray  # (N,) int64 permutation, first = label first
    score: np.ndarray  # (N,) float32 in [0, 1], rank / (N - 1), lower = label sooner
    batch: np.ndarray  # (b,) int64, the head that survives rounds, = order[:b]
    audit: np.ndarray  # (a,) int64, batch members drawn at random for the audit
    batch_kind: str  # "alfamix", "diversity" or a baseline's name
    batch_event: str  # "kept", "new" (none to keep), "stale", or "requeried" (a baseline, every round)
    candidates: np.ndarray  # (N,) bool, ALFA-Mix candidates at the paper's stopping cap
    probs: np.ndarray | None  # (N, C) class probabilities of the head, None without one


def stream_queue(
    z_lab: torch.Tensor,
    y_lab: torch.Tensor,
    z_unl: torch.Tensor,
    head: nn.Module | None,
    carried: CarriedBatch,
    config: StreamConfig = StreamConfig(),
    random_state: int = 0,
) -> StreamQueue:
    """The queue for this round: (L, D) labeled and (N, D) unlabeled embeddings, the head
    trained on them (None before the first label) and the batch carried from the last round.

    Raises ModelInputError on malformed input.
    """
    _validate_stream(z_lab, y_lab, z_unl, head, carried, config)
    n_items = len(z_unl)
    if n_items == 0:
        none = np.zeros(0, dtype=np.int64)
        return StreamQueue(none, np.zeros(0, np.float32), none, none, config.strategy, "new", np.zeros(0, bool), None)
    if head is not None:  # every strategy ranks in the space ALFA-Mix mixes in
        projection, head = mixing_space(head)
        z_lab, z_unl = project(projection, z_lab), project(projection, z_unl)  # (L, P), (N, P)
    probs = predict_proba(head, z_unl).cpu().numpy() if head is not None else None  # (N, C)
    if config.strategy != "alfamix":
        order = baseline_order(config.strategy, z_lab.cpu(), z_unl.cpu(), probs, config.n_query, random_state)
        batch = order[: config.n_query]
        return StreamQueue(
            order, _rank_scores(order), batch, batch[:0], config.strategy, "requeried", np.zeros(n_items, bool), probs
        )
    rng = np.random.default_rng([random_state, len(z_lab)])
    tiebreak = rng.permutation(n_items)  # (N,)
    n_classes_labeled = len(torch.unique(y_lab)) if len(y_lab) else 0
    if head is not None and n_classes_labeled >= 2:
        assert probs is not None  # a head gives probabilities
        candidates, first_flip_cap, flip_count = _flip_summary(z_lab, y_lab, z_unl, head, probs, config)
    else:  # one labeled class: the loss gradient is exactly zero and nothing can flip
        candidates = np.zeros(n_items, dtype=bool)
        first_flip_cap = np.full(n_items, np.inf, dtype=np.float32)
        flip_count = np.zeros(n_items, dtype=np.int64)
    event = _carry_decision(carried, candidates)
    if event == "kept":
        batch, audit, kind = carried.members, carried.audit, carried.kind
    else:
        batch, audit, kind = _new_batch(z_lab, z_unl, candidates, carried.audit, config, rng)
    margin = _margin(probs) if probs is not None else np.zeros(n_items, dtype=np.float32)
    rest = _diverse_rest(z_unl, batch, candidates, first_flip_cap, flip_count, margin, tiebreak)
    order = np.concatenate([batch, rest]).astype(np.int64)
    return StreamQueue(order, _rank_scores(order), batch, audit, kind, event, candidates, probs)


def _carry_decision(carried: CarriedBatch, candidates: np.ndarray) -> str:
    """Whether the carried batch is "kept", or replaced because it is empty ("new") or "stale"."""
    if len(carried.members) == 0:
        return "new"
    if carried.kind != "alfamix":
        return "kept"  # a diversity batch is not built from candidates: it runs to its end
    judged = np.setdiff1d(carried.members, carried.audit)  # audit picks are random by design
    if candidates.any() and len(judged) and not candidates[judged].any():
        return "stale"
    return "kept"


def _flip_summary(
    z_lab: torch.Tensor,
    y_lab: torch.Tensor,
    z_unl: torch.Tensor,
    head: nn.Module,
    probs: np.ndarray,
    stream: StreamConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates at the paper's stopping cap (N,), first flipping cap over the whole schedule
    (N,) (inf if none) and distinct anchors flipping at that cap (N,)."""
    config = stream.query
    mode = config.mode
    caps = cap_schedule(config.cap_step or DEFAULT_CAP_STEP[mode])
    n_items, dim = z_unl.shape
    n_classes = probs.shape[1]
    pseudo_labels = torch.from_numpy(probs.argmax(axis=1)).to(z_unl.device)  # (N,)
    with torch.no_grad():
        anchors = distinct_anchors(compute_anchors(z_lab, y_lab, n_classes))  # (K, D)
        chunk_size = max(1, config.max_chunk_elements // (n_classes * max(dim, len(caps) * n_classes)))
        # n_query = N never stops the scan early: every cap is evaluated.
        if mode == "closed_form":
            search = search_closed_form(
                head, z_unl, anchors, pseudo_labels, n_query=n_items, caps=caps, chunk_size=chunk_size
            )
        else:
            generator = torch.Generator(device=z_unl.device).manual_seed(0)
            search = search_learned(
                head,
                z_unl,
                anchors,
                pseudo_labels,
                n_query=n_items,
                caps=caps,
                chunk_size=max(1, chunk_size // 16),
                generator=generator,
                config=config.learned,
            )
    first_flip_cap = search.first_flip_cap.cpu().numpy()
    candidates = _paper_candidates(first_flip_cap, caps, stream.n_query)
    return candidates, first_flip_cap, search.flip_count.cpu().numpy()


def _paper_candidates(first_flip_cap: np.ndarray, caps: list[float], n_query: int) -> np.ndarray:
    """The paper's candidates: items flipping by the first cap at which more than n_query do."""
    for cap in caps:
        if (first_flip_cap <= cap).sum() > n_query:
            return first_flip_cap <= cap
    return np.isfinite(first_flip_cap)


def _new_batch(
    z_lab: torch.Tensor,
    z_unl: torch.Tensor,
    candidates: np.ndarray,
    kept_audit: np.ndarray,
    config: StreamConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, str]:
    """A new batch (b,), its audit members (a,) and its kind. Audit tasks of the batch it
    replaces stay (drawn at random, they are still a fair sample), so a batch redrawn before
    its audit slots were reached loses none."""
    n_items = len(z_unl)
    n_batch = min(config.n_query, n_items)
    n_audit = max(round(n_batch * config.audit_fraction), len(kept_audit)) if config.audit_fraction else 0
    n_diverse = n_batch - n_audit
    generator = torch.Generator(device=z_unl.device).manual_seed(int(rng.integers(2**31)))
    kind = "alfamix" if candidates.any() else "diversity"
    features = F.normalize(z_unl, dim=1)  # (N, D)
    pool = np.flatnonzero(candidates) if candidates.any() else np.arange(n_items)
    pool = np.setdiff1d(pool, kept_audit)
    picks = _representatives(features, pool, n_diverse, generator, config.query.kmeans)
    if len(picks) < n_diverse:  # fewer candidates than slots: fill with representatives of the rest
        others = np.setdiff1d(np.arange(n_items), np.concatenate([picks, kept_audit]))
        picks = np.concatenate(
            [picks, _representatives(features, others, n_diverse - len(picks), generator, config.query.kmeans)]
        )
    picks = _farthest_first(features, F.normalize(z_lab, dim=1) if len(z_lab) else None, picks)
    outside = np.setdiff1d(np.arange(n_items), np.concatenate([picks, kept_audit]))
    drawn = rng.choice(outside, size=min(n_audit - len(kept_audit), len(outside)), replace=False)
    audit = np.concatenate([kept_audit, drawn]).astype(np.int64)
    return _interleave_audit(picks, audit, n_batch), audit, kind


def _representatives(
    features: torch.Tensor, rows: np.ndarray, n_select: int, generator: torch.Generator, kmeans: KMeansConfig
) -> np.ndarray:
    """``n_select`` of ``rows`` (pool indices) nearest the k-means centres of their unit ``features``;
    large sets are clustered on a seeded subset of ``kmeans.max_rows`` rows."""
    rows = rows[subsample(len(rows), kmeans.max_rows, generator, torch.device("cpu")).numpy()]
    with torch.no_grad():
        selection = select_diverse(features[torch.from_numpy(rows).to(features.device)], n_select, generator, kmeans)
    return rows[selection.picks.cpu().numpy()]


def _interleave_audit(picks: np.ndarray, audit: np.ndarray, n_batch: int) -> np.ndarray:
    """The batch with the audit picks in the middle slot of every stretch of k, k = n_batch / len(audit)
    (slot 10 of 20 for one): early enough to be reached before a batch goes stale."""
    if len(audit) == 0:
        return picks
    batch = np.empty(len(picks) + len(audit), dtype=np.int64)
    slots = np.zeros(len(batch), dtype=bool)
    slots[((np.arange(len(audit)) + 0.5) * len(batch) / len(audit)).astype(np.int64)] = True
    batch[slots] = audit
    batch[~slots] = picks
    return batch


def _farthest_first(features: torch.Tensor, labeled: torch.Tensor | None, picks: np.ndarray) -> np.ndarray:
    """``picks`` reordered greedily, each farthest from the labeled items and the picks before it.

    With nothing labeled the first is the pick nearest the mean of all picks (the most typical)."""
    z = features[torch.from_numpy(picks).to(features.device)]  # (b, D) unit rows
    # (b,) squared distances of unit vectors to the labeled items; without any, nearest the mean first.
    typical = -((z - z.mean(dim=0)) ** 2).sum(dim=1)
    closest = typical if labeled is None else (2 - 2 * z @ labeled.T).amin(dim=1)
    order = []
    for _ in range(len(picks)):
        index = int(closest.argmax())
        order.append(index)
        closest = torch.minimum(closest, 2 - 2 * z @ z[index])
        closest[index] = -torch.inf
    return picks[np.array(order, dtype=np.int64)]


def _diverse_rest(
    z_unl: torch.Tensor,
    batch: np.ndarray,
    candidates: np.ndarray,
    first_flip_cap: np.ndarray,
    flip_count: np.ndarray,
    margin: np.ndarray,
    tiebreak: np.ndarray,
) -> np.ndarray:
    """The items not in ``batch``, ranked, then taken in turn from each batch member's region."""
    n_items = len(z_unl)
    # np.lexsort sorts by the last key first.
    ranked = np.lexsort((tiebreak, margin, -flip_count, first_flip_cap, ~candidates))
    in_batch = np.zeros(n_items, dtype=bool)
    in_batch[batch] = True
    ranked = ranked[~in_batch[ranked]]
    if len(batch) < 2 or len(ranked) == 0:
        return ranked.astype(np.int64)
    # Items that flip at some cap come before those that never do; within each tier the
    # regions take turns: the best of every region, then the second best...
    tier = ~np.isfinite(first_flip_cap[ranked])  # (R,)
    group = tier * len(batch) + _nearest(F.normalize(z_unl, dim=1), batch)[ranked]  # (R,)
    by_group = np.argsort(group, kind="stable")
    turn = np.empty(len(ranked), dtype=np.int64)
    turn[by_group] = np.arange(len(ranked)) - np.searchsorted(group[by_group], group[by_group])
    return ranked[np.lexsort((np.arange(len(ranked)), turn, tier))].astype(np.int64)


def _nearest(features: torch.Tensor, picks: np.ndarray, chunk_rows: int = 65_536) -> np.ndarray:
    """Index into ``picks`` of the nearest pick for every row of unit ``features``, (N,)."""
    centres = features[torch.from_numpy(picks).to(features.device)]  # (b, D)
    return np.concatenate(
        [
            (features[start : start + chunk_rows] @ centres.T).argmax(dim=1).cpu().numpy()
            for start in range(0, len(features), chunk_rows)
        ]
    )


def _margin(probs: np.ndarray) -> np.ndarray:
    top2 = -np.sort(-probs, axis=1)[:, :2]  # (N, 2)
    return (top2[:, 0] - top2[:, -1]).astype(np.float32)


def _rank_scores(order: np.ndarray) -> np.ndarray:
    score = np.empty(len(order), dtype=np.float32)
    score[order] = np.arange(len(order), dtype=np.float64) / max(len(order) - 1, 1)
    return score


def _validate_stream(
    z_lab: torch.Tensor,
    y_lab: torch.Tensor,
    z_unl: torch.Tensor,
    head: nn.Module | None,
    carried: CarriedBatch,
    config: StreamConfig,
) -> None:
    if config.strategy not in STRATEGIES:
        raise ModelInputError(f"strategy={config.strategy!r} should be one of {', '.join(STRATEGIES)}")
    if not 0 <= config.audit_fraction < 1:
        raise ModelInputError(f"audit_fraction={config.audit_fraction} should be in [0, 1)")
    if head is not None and len(z_lab):
        validate_query_inputs(z_lab, y_lab, z_unl, head, replace(config.query, n_query=config.n_query))
    else:
        validate_pool(z_unl, config.n_query)
    n_items = len(z_unl)
    for name, indices in (("members", carried.members), ("audit", carried.audit)):
        if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
            raise ModelInputError(f"carried {name} span [{indices.min()}, {indices.max()}], outside [0, {n_items})")
    if len(np.unique(carried.members)) != len(carried.members):
        raise ModelInputError("carried members repeat an item")
    if not np.isin(carried.audit, carried.members).all():
        raise ModelInputError("carried audit items must be members of the carried batch")
