"""Active learning as Label Studio runs it: a live stream of single labels from zero.

Two protocols on the offline datasets of ``bench.datasets``:

- **live**: no label at first. A round (train the head on every label so far, build the
  queue, push the front ``queue_head`` tasks as predictions) runs before the first label and
  after every ``cadence`` labels. Annotators take the task Label Studio would serve
  (``bench.label_studio_serving``: the ``cluster`` rule, then score, locks). In the team
  setting each of ``n_annotators`` takes a random task among the first n_annotators + 1 of
  that order, as the issue describes for a server that randomises (the open-source server
  serves the first unlocked one);
- **batch**: the paper's protocol from zero: query ``n_query`` items, label them all, retrain.

Policies: ``alfamix`` and the baselines of ``model.alfamix.stream`` (random, entropy, margin,
coreset), and ``alfamix_today``, the queue before this change (a fresh ``query`` batch every
round, no queue before the first label). No policy sends cluster ids: Label Studio's
prediction import stores every ``cluster`` as None (tests/e2e/test_label_studio_serving.py),
so the backend never could, and the serving rule then orders by score alone.

Run ``python -m bench.stream_simulation`` (see ``--help``); writes raw runs to JSON, and
``python -m bench.stream_report`` turns them into tables and plots.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.datasets import DATASETS, DatasetSplits
from bench.label_studio_serving import LivePrediction, next_task, serving_order
from model.alfamix.query import QueryConfig, query
from model.alfamix.stream import STRATEGIES, CarriedBatch, StreamConfig, stream_queue
from model.head import TRAINING_MODES, head_config_for, predict_proba, train_head

logger = logging.getLogger(__name__)

JSON_PATH = Path(__file__).resolve().parent / "out" / "stream_simulation.json"
TODAY = ("alfamix_today",)
POLICIES = (*STRATEGIES, *TODAY)
REPORTED = ("mnist", "fashion_mnist_lite0", "digits")
QUERY_CHUNK_ELEMENTS = 1 << 20  # as in bench.simulate: memory only, same results


@dataclass(frozen=True)
class Protocol:
    """One way labels arrive. ``cadence`` 0 means the batch protocol."""

    name: str
    cadence: int = 1  # labels between two rounds
    n_annotators: int = 1
    audit_fraction: float = 0.0
    n_labels: int = 200
    n_query: int = 20
    queue_head: int = 50  # predictions a round pushes, as the backend's ALFAMIX_QUEUE_HEAD
    eval_every: int = 20


PROTOCOLS = {
    "live": Protocol("live"),
    "live_every5": Protocol("live_every5", cadence=5),
    "team3": Protocol("team3", n_annotators=3),
    "live_audit5": Protocol("live_audit5", audit_fraction=0.05),
    "batch": Protocol("batch", cadence=0),
}


@dataclass
class StreamRun:
    dataset: str
    protocol: str
    policy: str
    seed: int
    training: str = "head"  # what each round trains (model.head.TRAINING_MODES)
    head_epochs: int = 300  # its full-batch epochs per round
    n_labels: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    served_first: int = 0  # labels whose task was the first unlabeled task of the latest queue
    served: int = 0
    batch_events: dict[str, int] = field(default_factory=dict)
    audit_hits: int = 0  # audit tasks whose pre-label (the live head's class) was right
    audit_judged: int = 0
    pool_accuracy: list[float] = field(default_factory=list)  # live head on the unlabeled pool, at audits
    seconds: float = 0.0


class _Stream:
    """The state of one live run: labels, the pushed predictions, the annotators."""

    def __init__(self, data: DatasetSplits, policy: str, protocol: Protocol, seed: int, training: str) -> None:
        self.data, self.policy, self.protocol, self.seed = data, policy, protocol, seed
        self.head_config = head_config_for(training)
        self.z = torch.from_numpy(data.z_pool)  # (N, D)
        self.y = torch.from_numpy(data.y_pool)  # (N,)
        self.is_labeled = np.zeros(len(data.y_pool), dtype=bool)
        self.labeled: list[int] = []
        self.live: dict[int, LivePrediction] = {}
        self.previous_clusters: dict[int, int | None] = {}  # the version before the live one, not pruned yet
        self.carried_members = np.zeros(0, dtype=np.int64)  # pool indices
        self.carried_audit = np.zeros(0, dtype=np.int64)
        self.carried_kind = "alfamix"
        self.audit: set[int] = set()
        self.head: nn.Module | None = None
        self.first_of_queue: list[int] = []  # the queue of the latest round, pool indices
        self.rng = np.random.default_rng([seed, 1])
        self.run = StreamRun(data.name, protocol.name, policy, seed, training, self.head_config.epochs)

    def train(self) -> nn.Module | None:
        if not self.labeled:
            return None
        rows = np.array(self.labeled)
        return train_head(self.z[rows], self.y[rows], self.data.n_classes, self.head_config, random_state=self.seed)

    def round(self) -> None:
        """Train, build the queue, push its front as the live version."""
        self.head = self.train()
        unl = np.flatnonzero(~self.is_labeled)  # (N - L,)
        rows = np.array(self.labeled, dtype=np.int64)
        z_lab, y_lab = self.z[rows], self.y[rows]
        if self.policy in TODAY:
            if self.head is None:
                return  # today no queue exists before the first label
            config = QueryConfig(n_query=self.protocol.n_query, max_chunk_elements=QUERY_CHUNK_ELEMENTS)
            result = query(z_lab, y_lab, self.z[unl], self.head, config, random_state=self.seed)
            order, score = result.order, result.score
        else:
            position = {int(task): i for i, task in enumerate(unl)}
            carried = CarriedBatch(
                members=np.array([position[t] for t in self.carried_members if t in position], dtype=np.int64),
                audit=np.array([position[t] for t in self.carried_audit if t in position], dtype=np.int64),
                kind=self.carried_kind,
            )
            config = StreamConfig(
                strategy=self.policy,
                n_query=self.protocol.n_query,
                audit_fraction=self.protocol.audit_fraction,
                query=QueryConfig(n_query=self.protocol.n_query, max_chunk_elements=QUERY_CHUNK_ELEMENTS),
            )
            queue = stream_queue(z_lab, y_lab, self.z[unl], self.head, carried, config, random_state=self.seed)
            order, score = queue.order, queue.score
            self.carried_members, self.carried_audit = unl[queue.batch], unl[queue.audit]
            self.carried_kind = queue.batch_kind
            self.audit = set(self.carried_audit.tolist())
            events = self.run.batch_events
            events[queue.batch_event] = events.get(queue.batch_event, 0) + 1
        front = order[: self.protocol.queue_head]
        self.previous_clusters = {task: p.cluster for task, p in self.live.items()}
        self.live = {int(unl[i]): LivePrediction(float(score[i]), None) for i in front}
        self.first_of_queue = unl[order].tolist()

    def stored_clusters(self) -> dict[int, list[int | None]]:
        stored: dict[int, list[int | None]] = {task: [p.cluster] for task, p in self.live.items()}
        for task, cluster in self.previous_clusters.items():
            stored.setdefault(task, []).append(cluster)
        return stored

    def serve(self, solved: list[int], held_by_others: set[int]) -> int | None:
        unlabeled = np.flatnonzero(~self.is_labeled).tolist()
        if self.protocol.n_annotators == 1:
            return next_task(self.live, solved, self.stored_clusters(), unlabeled, held_by_others, self.rng)
        ranked = serving_order(self.live, solved, self.stored_clusters(), unlabeled)
        choices = [t for t in ranked[: self.protocol.n_annotators + 1] if t not in held_by_others]
        if choices:
            return int(self.rng.choice(choices))
        return next_task(self.live, solved, self.stored_clusters(), unlabeled, held_by_others, self.rng)

    def label(self, task: int) -> None:
        self.run.served += 1
        first = next((t for t in self.first_of_queue if not self.is_labeled[t]), None)
        self.run.served_first += int(task == first)
        if task in self.audit and self.head is not None:
            unl = np.flatnonzero(~self.is_labeled)
            predicted = predict_proba(self.head, self.z[unl]).argmax(dim=1).numpy()  # (N - L,)
            self.run.audit_hits += int(predicted[np.searchsorted(unl, task)] == self.data.y_pool[task])
            self.run.audit_judged += 1
            self.run.pool_accuracy.append(float((predicted == self.data.y_pool[unl]).mean()))
        self.is_labeled[task] = True
        self.labeled.append(task)

    def evaluate(self, head: nn.Module | None) -> None:
        y_test = self.data.y_test
        if head is None:
            accuracy = float((y_test == 0).mean())  # no model: every policy predicts class 0
        else:
            accuracy = float(
                (predict_proba(head, torch.from_numpy(self.data.z_test)).argmax(dim=1).numpy() == y_test).mean()
            )
        self.run.n_labels.append(len(self.labeled))
        self.run.accuracy.append(accuracy)


def run_live(data: DatasetSplits, policy: str, protocol: Protocol, seed: int, training: str = "head") -> StreamRun:
    return run_live_stream(_Stream(data, policy, protocol, seed, training))


def run_live_stream(stream: _Stream) -> StreamRun:
    """The live protocol on a prepared stream: a subclass may change what a label or a round does."""
    protocol = stream.protocol
    n_annotators = protocol.n_annotators
    stream.round()
    stream.evaluate(stream.head)
    solved: list[list[int]] = [[] for _ in range(n_annotators)]
    held: list[int | None] = [None] * n_annotators
    for a in range(n_annotators):
        held[a] = stream.serve(solved[a], {t for t in held if t is not None})
    turn = 0
    while len(stream.labeled) < protocol.n_labels:
        a = turn % n_annotators
        turn += 1
        task = held[a]
        if task is None:
            break
        stream.label(task)
        solved[a].append(task)
        held[a] = None
        if len(stream.labeled) % protocol.cadence == 0:
            stream.round()
        if len(stream.labeled) % protocol.eval_every == 0:
            up_to_date = len(stream.labeled) % protocol.cadence == 0
            stream.evaluate(stream.head if up_to_date else stream.train())
        held[a] = stream.serve(solved[a], {t for t in held if t is not None})
    return stream.run


def run_batch(data: DatasetSplits, policy: str, protocol: Protocol, seed: int, training: str = "head") -> StreamRun:
    """The paper's protocol from zero labels: query n_query, label them all, retrain."""
    stream = _Stream(data, policy, protocol, seed, training)
    while True:
        head = stream.train()
        stream.evaluate(head)
        if len(stream.labeled) >= protocol.n_labels:
            return stream.run
        stream.carried_members = np.zeros(0, dtype=np.int64)  # every query draws a new batch
        stream.round()
        if not stream.first_of_queue:  # "today" before the first label: Label Studio serves at random
            unl = np.flatnonzero(~stream.is_labeled)
            stream.first_of_queue = stream.rng.permutation(unl).tolist()
        for task in stream.first_of_queue[: protocol.n_query]:
            stream.label(task)


def simulate(
    datasets: list[str],
    protocols: list[str],
    policies: list[str],
    seeds: list[int],
    split_seed: int = 0,
    trainings: tuple[str, ...] = ("head",),
) -> list[StreamRun]:
    runs = []
    for name in datasets:
        data = DATASETS[name](random_state=split_seed)  # type: ignore[call-arg]
        for protocol_name in protocols:
            protocol = PROTOCOLS[protocol_name]
            for seed in seeds:
                for policy in policies:
                    for training in trainings:
                        started = time.perf_counter()
                        runner = run_batch if protocol.cadence == 0 else run_live
                        run = runner(data, policy, protocol, seed, training)
                        run.seconds = time.perf_counter() - started
                        runs.append(run)
                        mean, final = 100 * np.mean(run.accuracy), 100 * run.accuracy[-1]
                        logger.info(
                            "%s %s %s %s seed=%d mean acc %.1f final %.1f (%.0f s)",
                            name, protocol_name, policy, training, seed, mean, final, run.seconds,
                        )  # fmt: skip
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(REPORTED), choices=list(DATASETS))
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--training", nargs="+", default=["head"], choices=list(TRAINING_MODES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--split-seed", type=int, default=0, help="pool/test split; 1 is the tuning split")
    parser.add_argument("--json", type=Path, default=JSON_PATH, help="where the raw runs go (appended by key)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    runs = simulate(args.datasets, args.protocols, args.policies, args.seeds, args.split_seed, tuple(args.training))
    saved = json.loads(args.json.read_text()) if args.json.is_file() else {"runs": []}
    key = lambda run: (run["dataset"], run["protocol"], run["policy"], run["seed"], run.get("training", "head"))  # noqa: E731
    merged = {key(run): run for run in saved["runs"]}
    merged.update({key(asdict(run)): asdict(run) for run in runs})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": list(merged.values())}, indent=1))
    counts = Counter((run.dataset, run.protocol) for run in runs)
    logger.info("wrote %d runs (%s) to %s", len(runs), dict(counts), args.json)


if __name__ == "__main__":
    main()
